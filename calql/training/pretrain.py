"""Offline pre-training (docs/method.md#offline-pre-training): gradient steps on uniform batches of
the labeled data.

Evaluated at step 0, every ``eval_every`` steps and at the end. Checkpoints every
``checkpoint_every`` steps (and every ``checkpoint_minutes``) let a killed job resume exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calql.envs.make import make_env
from calql.errors import ConfigError
from calql.training.evaluation import EvalEnvs
from calql.training.phase import LiveLogger, TrainingPhase
from calql.training.resolve import run_algorithm
from calql.training.run_spec import RunSpec
from calql.training.seeding import derive_seed, seed_everything


@dataclass
class PretrainCounters:
    """Where pre-training stands (checkpointed, and in run.json)."""

    grad_step: int = 0
    """Gradient steps done."""
    eval_index: int = 0
    """Index of the next evaluation (seeds its episodes)."""


class Pretrain(TrainingPhase):
    """Offline pre-training: one gradient step per iteration, evaluations and checkpoints between."""

    name = "pretrain"
    unit = "step"
    counters_type = PretrainCounters
    counters: PretrainCounters

    def check(self, run: dict[str, Any]) -> None:
        if run["pretrain"] is None:
            raise ConfigError(
                f"method '{self.method}' has no offline pre-training phase (its algorithm trains online only)"
            )

    def build(self, state: dict[str, Any] | None) -> None:
        from calql.agents import make_agent

        seed_everything(derive_seed(self.seed, "pretrain", "init"))
        self.agent = make_agent(
            run_algorithm(self.run_config), self.ctx.obs_dim, self.ctx.act_dim, self.run_config["agent"], self.device
        )
        self.agent.set_mode("offline")
        self.sampler = np.random.default_rng(derive_seed(self.seed, "pretrain", "sampler"))
        env_seed = derive_seed(self.seed, "pretrain", "env")
        first = make_env(
            self.ctx.task, seed=env_seed, evaluation=True, dataset_layout=self.dataset.meta.get("obs_layout")
        )
        self.eval_envs = EvalEnvs(lambda: make_env(self.ctx.task, seed=env_seed, evaluation=True), first)

    @property
    def total(self) -> int:
        return int(self.budget.steps)

    def done(self) -> int:
        return self.counters.grad_step

    def position(self) -> tuple[int, int]:
        return self.counters.grad_step, 0

    def close(self) -> None:
        self.eval_envs.close()

    # ---- the loop -----------------------------------------------------------------------------
    def train(self) -> None:
        counters, total = self.counters, self.total
        while counters.grad_step < total:
            self.gradient_step()
            if counters.grad_step % int(self.budget.eval_every) == 0 or counters.grad_step == total:
                self.evaluate_now()
            if counters.grad_step < total and self.checkpoint_due():
                self.save()
                self.stop_if_terminated(f"gradient step {counters.grad_step}")
            self.stop_if_asked("gradient step")

    def gradient_step(self) -> None:
        """One update on a uniform batch of the offline data."""
        metrics = self.agent.update(self.data.sample(int(self.budget.batch_size), self.sampler))
        self.counters.grad_step += 1
        self.recorder.accumulate(metrics, self.counters.grad_step)
        self.progress_bar(1)

    def checkpoint_due(self) -> bool:
        return self.counters.grad_step % int(self.budget.checkpoint_every) == 0 or self.checkpoint_overdue()


def run_pretrain(
    spec: RunSpec,
    seed: int,
    dataset_path: str | Path,
    run_dir: str | Path,
    *,
    live: LiveLogger | None = None,
    restart: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Pre-train the run of ``spec`` (one task x method) with ``seed``; returns ``RUN/pretrain``.

    Resumes from ``RUN/pretrain/checkpoints/last.pt`` when present; returns at once if the phase
    already completed with this config. ``stop_after`` (tests) raises
    :class:`~calql.training.phase.StopRequested` after that many gradient steps, as if the job had
    been killed there.
    """
    phase = Pretrain(
        spec,
        seed,
        dataset_path,
        run_dir,
        live=live,
        restart=restart,
        progress=progress,
        stop_after=stop_after,
    )
    return phase.run()
