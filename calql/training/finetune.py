"""Online fine-tuning (spec 4, online phase), as the official loop does it.

Repeat until ``env_steps`` reaches the budget: roll out ONE full episode with the stochastic
policy, label it with MC returns exactly as the offline data (spec 2.4), append it to the online
FIFO buffer, then do ``episode length x utd_ratio`` gradient steps on batches of
``int(batch * mixing_ratio)`` offline + the rest online transitions. Evaluate at env step 0, at the
first episode end after each multiple of ``eval_every_env_steps``, and at the end.

Checkpoints are written only at episode ends, so no environment state is ever needed to resume;
episodes are seeded by their index (:mod:`calql.training.seeding`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from calql.config import RewardSpec, get_task
from calql.data.mc_returns import mc_returns_for_episode
from calql.envs.make import make_env
from calql.errors import CheckpointError, ConfigError
from calql.training.buffers import CLIP_ACTION, OnlineBuffer, mixed_batch
from calql.training.checkpoint import check_identity, load_checkpoint
from calql.training.config import phase_hash, resolve_run_config
from calql.training.evaluation import CalibrationProbe, evaluate, run_episode, score_spec
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
    set_aside,
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


def _next_multiple(value: int, every: int) -> int:
    return (value // every + 1) * every


def _unreadable_init(ctx: PhaseContext, init: Path, exc: CheckpointError) -> CheckpointError:
    """The error for an unreadable pre-trained checkpoint. If it is this run's own
    ``pretrain/final.pt``, it is moved aside with the phase's ``run.json`` (kept, renamed), so the
    pre-training phase is incomplete and the next `snakemake` run rebuilds it: no file needs
    deleting by hand. A checkpoint given by hand elsewhere is left where it is."""
    own = ctx.run_dir / "pretrain" / "final.pt"
    if init.resolve() != own.resolve():
        return CheckpointError(f"{exc}; pass another --init or re-run `calql pretrain` to rebuild it")
    aside = set_aside(init, "unreadable")
    record = own.with_name("run.json")
    if record.exists():
        set_aside(record, "unreadable-final")
    log.error("moved the unreadable pre-trained checkpoint %s aside to %s", init, aside)
    return CheckpointError(f"{exc}. Moved it aside to {aside}; rerun the same `snakemake` command (its "
                           f"pretrain job rebuilds it, then this job runs again), or by hand `calql "
                           f"pretrain` with --run-dir {ctx.run_dir}")


def load_init(ctx: PhaseContext, agent: Any, init: Path) -> None:
    """Load the pre-trained agent, refusing one from another task/method/seed/size/pretrain config."""
    if not init.exists():
        raise CheckpointError(f"pre-trained checkpoint not found: {init} (run `calql pretrain` for this "
                              "task/method/seed first, or pass --init)")
    try:
        state = load_checkpoint(init)
    except CheckpointError as exc:
        raise _unreadable_init(ctx, init, exc) from exc
    expected = {**ctx.identity(), "phase": "pretrain", "config_hash": phase_hash(ctx.run, "pretrain")}
    check_identity(state, expected, init)
    agent.load_state_dict(state["agent"])
    log.info("initialised from %s (pre-trained %s gradient steps)", init, state["counters"].get("grad_step"))


def run_finetune(
    config: dict[str, Any],
    task_name: str,
    method: str,
    seed: int,
    dataset_path: str | Path,
    run_dir: str | Path,
    *,
    init: str | Path | None = None,
    live: LiveLogger | None = None,
    restart: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Fine-tune online; returns ``RUN/finetune``.

    ``init`` is the pre-training ``final.pt`` (default ``RUN/pretrain/final.pt``); ``sac`` starts
    from scratch and uses no offline data in its batches. Resumes from ``checkpoints/last.pt``.
    ``stop_after`` (tests) raises :class:`StopRequested` at the first episode end at or after
    that many env steps, as if the job had been killed there.
    """
    from calql.agents import make_agent

    run = resolve_run_config(config, task_name, method)
    budget = run["finetune"]
    device = setup_torch(run)
    ctx = PhaseContext(run=run, task=get_task(config, task_name), phase="finetune", seed=int(seed),
                       run_dir=Path(run_dir), device=device)
    if method == "sac":
        if init is not None:
            raise ConfigError("sac is SAC from scratch: it takes no --init checkpoint")
    elif init is None:
        init = ctx.run_dir / "pretrain" / "final.pt"
    dataset, data = load_training_data(ctx, Path(dataset_path))
    if already_complete(ctx, restart):
        log.info("finetune already complete: %s", ctx.phase_dir)
        return ctx.phase_dir

    state = load_last(ctx)  # a resume needs no init checkpoint: the agent comes from last.pt
    seed_everything(derive_seed(seed, "finetune", "init"))
    agent = make_agent(method, ctx.obs_dim, ctx.act_dim, run["agent"], device)
    if init is not None and state is None:
        load_init(ctx, agent, Path(init))
    agent.set_phase("online")
    seed_everything(derive_seed(seed, "finetune", "rng"))
    sampler = np.random.default_rng(derive_seed(seed, "finetune", "sampler"))
    env = make_env(ctx.task, seed=derive_seed(seed, "finetune", "env"), evaluation=True,
                   dataset_layout=dataset.meta.get("obs_layout"))
    eval_env = make_env(ctx.task, seed=derive_seed(seed, "finetune", "eval-env"), evaluation=True)
    max_len = int(env.spec.max_episode_steps) if env.spec and env.spec.max_episode_steps else int(budget["env_steps"])
    capacity = min(int(budget["buffer_size"]), int(budget["env_steps"]) + max_len)
    buffer = OnlineBuffer(capacity, ctx.obs_dim, ctx.act_dim, device)
    probe = CalibrationProbe(data, run["calibration_states"], seed)
    score = score_spec(run, dataset.meta)
    reward_spec = RewardSpec(**run["reward"])
    mixing = float(budget["mixing_ratio"])
    offline = data if mixing > 0 else None
    recorder = PhaseRecorder(ctx, live=live)

    def evaluate_row(grad_step: int, env_steps: int, eval_index: int) -> None:
        recorder.begin_eval()
        ev = evaluate(eval_env, agent, budget["eval_episodes"], seed, "finetune", eval_index, score, device)
        recorder.add_row(grad_step, env_steps, ev, probe(agent))

    every, ckpt_every = int(budget["eval_every_env_steps"]), int(budget["checkpoint_every_env_steps"])
    c = {"grad_step": 0, "env_steps": 0, "episodes": 0, "eval_index": 0, "next_eval": every,
         "next_checkpoint": ckpt_every, "grad_debt": 0.0, "train_successes": 0,
         "pending": 0, "boundary_done": True}
    if state is not None:
        agent.load_state_dict(state["agent"])
        restore_rng(state["rng"]["global"])
        sampler = generator_from_state(state["rng"]["sampler"])
        buffer.load_state_dict(state["buffer"])
        c.update(state["counters"])
        recorder.load_state_dict(state["recorder"], c["grad_step"], c["env_steps"])
    else:
        evaluate_row(0, 0, 0)
        c["eval_index"] = 1

    total, bs, utd = int(budget["env_steps"]), int(budget["batch_size"]), float(budget["utd_ratio"])
    ckpt_seconds = 60.0 * float(budget["checkpoint_minutes"])
    last_ckpt_time = time.monotonic()
    bar = tqdm(total=total, initial=c["env_steps"], desc=f"finetune {task_name}/{method}/s{seed}",
               unit="env step", disable=not progress, mininterval=5.0)

    def save() -> None:
        rng = {"global": capture_rng(), "sampler": generator_state(sampler)}
        save_last(ctx, checkpoint_state(ctx, agent, recorder, c, rng, {"buffer": buffer.state_dict()}))

    try:
        # The loop is a small state machine so that a checkpoint can be taken between any two
        # gradient steps (on SIGTERM): "pending" updates of the last episode, then its boundary
        # work (evaluation, periodic checkpoint) once ("boundary_done"), then the next episode.
        while True:
            if c["pending"] == 0 and c["boundary_done"]:
                if c["env_steps"] >= total:
                    break
                # 1. one full episode with the stochastic policy, labeled like the offline data
                ep = run_episode(env, agent, derive_seed(seed, "finetune", "train", c["episodes"]), False, device)
                train_rewards, mc = mc_returns_for_episode(ep["rewards"], ep["terminals"], reward_spec, run["gamma"])
                buffer.add({
                    "observations": ep["observations"],
                    "actions": np.clip(ep["actions"], -CLIP_ACTION, CLIP_ACTION),
                    "rewards": train_rewards,
                    "next_observations": ep["next_observations"],
                    "dones": ep["terminals"].astype(np.float32),
                    "mc_returns": mc,
                })
                length = len(ep["rewards"])
                c["env_steps"] += length
                c["episodes"] += 1
                c["train_successes"] += int(ep["success"])
                bar.update(length)
                # episode length x UTD gradient steps (a fractional UTD carries over)
                c["grad_debt"] += length * utd
                c["pending"] = int(c["grad_debt"])
                c["grad_debt"] -= c["pending"]
                c["boundary_done"] = False
            # 2. the gradient steps of the last episode
            while c["pending"] > 0:
                metrics = agent.update(mixed_batch(offline, buffer, bs, mixing, sampler))
                c["grad_step"] += 1
                c["pending"] -= 1
                recorder.accumulate(metrics, c["grad_step"])
                if termination_requested():
                    save()
                    raise_terminated("finetune", f"env step {c['env_steps']}, gradient step {c['grad_step']}")
            # 3. evaluation and checkpoint at this episode boundary
            if c["env_steps"] >= c["next_eval"] or c["env_steps"] >= total:
                evaluate_row(c["grad_step"], c["env_steps"], c["eval_index"])
                c["eval_index"] += 1
                c["next_eval"] = _next_multiple(c["env_steps"], every)
            c["boundary_done"] = True
            if c["env_steps"] < total and (c["env_steps"] >= c["next_checkpoint"] or termination_requested()
                                           or time.monotonic() - last_ckpt_time > ckpt_seconds):
                c["next_checkpoint"] = _next_multiple(c["env_steps"], ckpt_every)
                save()
                last_ckpt_time = time.monotonic()
                if termination_requested():
                    raise_terminated("finetune", f"env step {c['env_steps']}, gradient step {c['grad_step']}")
            if stop_after is not None and c["env_steps"] >= stop_after and c["env_steps"] < total:
                raise StopRequested(f"stop requested after env step {c['env_steps']}")
    finally:
        bar.close()
        env.close()
        eval_env.close()
    finish_phase(ctx, agent, recorder, c, dataset.meta)
    return ctx.phase_dir
