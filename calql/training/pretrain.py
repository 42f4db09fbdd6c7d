"""Offline pre-training (spec 4, offline phase): gradient steps on uniform batches of the labeled data.

Evaluated at step 0, every ``eval_every`` steps and at the end. Checkpoints every
``checkpoint_every`` steps (and every ``checkpoint_minutes``) let a killed job resume exactly.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from calql.config import get_task
from calql.envs.make import make_env
from calql.errors import ConfigError
from calql.training.config import resolve_run_config
from calql.training.evaluation import CalibrationProbe, evaluate, score_spec
from calql.training.runner import (
    LiveLogger,
    PhaseContext,
    PhaseRecorder,
    StopRequested,
    already_complete,
    checkpoint_state,
    raise_terminated,
    termination_requested,
    finish_phase,
    load_last,
    load_training_data,
    save_last,
    setup_torch,
)
from calql.training.seeding import (
    capture_rng,
    derive_seed,
    generator_from_state,
    generator_state,
    restore_rng,
    seed_everything,
)

log = logging.getLogger(__name__)


def run_pretrain(
    config: dict[str, Any],
    task_name: str,
    method: str,
    seed: int,
    dataset_path: str | Path,
    run_dir: str | Path,
    *,
    live: LiveLogger | None = None,
    restart: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Pre-train ``method`` on ``task`` with ``seed``; returns ``RUN/pretrain``.

    Resumes from ``RUN/pretrain/checkpoints/last.pt`` when present; returns at once if the phase
    already completed with this config. ``stop_after`` (tests) raises :class:`StopRequested`
    after that many gradient steps, as if the job had been killed there.
    """
    from calql.agents import make_agent

    run = resolve_run_config(config, task_name, method)
    if run["pretrain"] is None:
        raise ConfigError(f"method '{method}' has no offline pre-training phase (SAC from scratch is online only)")
    budget = run["pretrain"]
    device = setup_torch(run)
    ctx = PhaseContext(run=run, task=get_task(config, task_name), phase="pretrain", seed=int(seed),
                       run_dir=Path(run_dir), device=device)
    dataset, data = load_training_data(ctx, Path(dataset_path))
    if already_complete(ctx, restart):
        log.info("pretrain already complete: %s", ctx.phase_dir)
        return ctx.phase_dir

    seed_everything(derive_seed(seed, "pretrain", "init"))
    agent = make_agent(method, ctx.obs_dim, ctx.act_dim, run["agent"], device)
    agent.set_phase("offline")
    sampler = np.random.default_rng(derive_seed(seed, "pretrain", "sampler"))
    env = make_env(ctx.task, seed=derive_seed(seed, "pretrain", "env"), evaluation=True,
                   dataset_layout=dataset.meta.get("obs_layout"))
    probe = CalibrationProbe(data, run["calibration_states"], seed)
    score = score_spec(run, dataset.meta)
    recorder = PhaseRecorder(ctx, live=live)

    def evaluate_row(step: int, eval_index: int) -> None:
        recorder.begin_eval()
        ev = evaluate(env, agent, budget["eval_episodes"], seed, "pretrain", eval_index, score, device)
        recorder.add_row(step, 0, ev, probe(agent))

    step, eval_index = 0, 0
    state = load_last(ctx)
    if state is not None:
        agent.load_state_dict(state["agent"])
        restore_rng(state["rng"]["global"])
        sampler = generator_from_state(state["rng"]["sampler"])
        step, eval_index = int(state["counters"]["grad_step"]), int(state["counters"]["eval_index"])
        recorder.load_state_dict(state["recorder"], step, 0)
    else:
        evaluate_row(0, 0)
        eval_index = 1

    total = int(budget["steps"])
    bs, every, ckpt_every = int(budget["batch_size"]), int(budget["eval_every"]), int(budget["checkpoint_every"])
    ckpt_seconds = 60.0 * float(budget["checkpoint_minutes"])
    last_ckpt_time = time.monotonic()
    bar = tqdm(total=total, initial=step, desc=f"pretrain {task_name}/{method}/s{seed}", unit="step",
               disable=not progress, mininterval=5.0)
    try:
        while step < total:
            metrics = agent.update(data.sample(bs, sampler))
            step += 1
            recorder.accumulate(metrics, step)
            bar.update(1)
            if step % every == 0 or step == total:
                evaluate_row(step, eval_index)
                eval_index += 1
            if step < total and (step % ckpt_every == 0 or termination_requested()
                                 or time.monotonic() - last_ckpt_time > ckpt_seconds):
                counters = {"grad_step": step, "eval_index": eval_index}
                rng = {"global": capture_rng(), "sampler": generator_state(sampler)}
                save_last(ctx, checkpoint_state(ctx, agent, recorder, counters, rng))
                last_ckpt_time = time.monotonic()
                if termination_requested():
                    raise_terminated("pretrain", f"gradient step {step}")
            if stop_after is not None and step >= stop_after and step < total:
                raise StopRequested(f"stop requested after gradient step {step}")
    finally:
        bar.close()
        env.close()
    finish_phase(ctx, agent, recorder, {"grad_step": step, "eval_index": eval_index}, dataset.meta)
    return ctx.phase_dir
