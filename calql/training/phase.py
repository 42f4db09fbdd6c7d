"""One training phase (pre-training or fine-tuning) of one run: the skeleton both phases share.

:class:`TrainingPhase` is the shape of a phase: check the resolved run config and load the data,
return at once if the phase already completed, build the agent and the loop's state, resume from the
last checkpoint or evaluate the starting point, train (the phase's own loop, in named steps),
and finish (``final.pt``, then ``run.json``). What it relies on has its own module: the phase's
folder and files (:mod:`calql.training.phase_files`), resume checkpoints
(:mod:`calql.training.resume`), SIGTERM (:mod:`calql.training.signals`), process-wide settings
(:mod:`calql.training.process`) and the rows of ``metrics.csv``
(:class:`calql.training.recorder.PhaseRecorder`).
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

from tqdm import tqdm

from calql.config import RewardSpec
from calql.data.damage import load_or_set_aside
from calql.data.format import Dataset
from calql.training.buffers import OfflineData, training_arrays
from calql.training.evaluation import CalibrationProbe, evaluate, score_spec
from calql.training.phase_files import PhaseContext, already_complete, finish_phase
from calql.training.process import setup_process
from calql.training.recorder import LiveLogger, PhaseRecorder
from calql.training.resume import checkpoint_state, load_last, save_last
from calql.training.run_config import RunConfig
from calql.training.run_spec import RunSpec
from calql.training.seeding import capture_rng, generator_from_state, generator_state, restore_rng
from calql.training.signals import raise_terminated, termination_requested

log = logging.getLogger(__name__)

__all__ = ["LiveLogger", "StopRequested", "TrainingPhase", "load_training_data"]


class StopRequested(Exception):
    """Raised by the ``stop_after`` test hook to simulate a crash after a given point."""


def load_training_data(ctx: PhaseContext, dataset_path: Path) -> tuple[Dataset, OfflineData]:
    """The labeled dataset (rewards re-labeled if the method uses its own transform) on the device."""
    dataset = load_or_set_aside(Path(dataset_path), ctx.run["task"], "label")
    reward = RewardSpec(**ctx.run["reward"])
    arrays = training_arrays(dataset, reward, ctx.run["gamma"], ctx.task.reward)
    ctx.obs_dim, ctx.act_dim = dataset.obs_dim, dataset.act_dim
    return dataset, OfflineData(arrays, ctx.device)


class TrainingPhase(abc.ABC):
    """The skeleton of a training phase; :meth:`run` is the same for pre-training and fine-tuning.

    1. :meth:`check` the run config (of the :class:`RunSpec`, resolved before), load the labeled
       data; return at once if the phase already completed with this config;
    2. :meth:`build` the agent, the sampler, the environments and the phase's own state (given the
       resume checkpoint, if any: fine-tuning then needs no pre-trained checkpoint);
    3. resume everything from that checkpoint, or evaluate the starting point;
    4. :meth:`train` until the budget (:attr:`total`, counted by :meth:`done`) is spent; the loop
       checkpoints with :meth:`save` and stops with :meth:`stop_if_terminated` / :meth:`stop_if_asked`;
    5. :func:`finish_phase`: ``final.pt``, then ``run.json``.
    """

    #: "pretrain" or "finetune": the folder RUN/<name>/ and the run config's budget section.
    name: ClassVar[str]
    #: Unit of the budget and of the progress bar.
    unit: ClassVar[str]
    #: The phase's counters dataclass; its fields are the checkpoint's and run.json's "counters".
    counters_type: ClassVar[type]

    def __init__(
        self,
        spec: RunSpec,
        seed: int,
        dataset_path: str | Path,
        run_dir: str | Path,
        *,
        live: LiveLogger | None = None,
        restart: bool = False,
        progress: bool = True,
        stop_after: int | None = None,
    ) -> None:
        self.spec, self.seed = spec, int(seed)
        self.run_config: dict[str, Any] = spec.run
        self.task_name, self.method = spec.task_name, spec.method
        self.dataset_path, self.run_dir = Path(dataset_path), Path(run_dir)
        self.live, self.restart, self.progress, self.stop_after = live, restart, progress, stop_after
        self.counters: Any = self.counters_type()
        self._bar: tqdm | None = None

    # ---- the skeleton ---------------------------------------------------------------------
    def run(self) -> Path:
        """Run (or resume, or skip when complete) the phase; returns ``RUN/<name>``."""
        self.check(self.run_config)
        self.budget: Any = RunConfig.from_json(self.run_config).budget(self.name)  # PretrainBudget | FinetuneBudget
        self.device = setup_process(self.run_config)
        self.ctx = PhaseContext(
            run=self.run_config,
            task=self.spec.task,
            phase=self.name,
            seed=self.seed,
            run_dir=self.run_dir,
            device=self.device,
        )
        self.dataset, self.data = load_training_data(self.ctx, self.dataset_path)
        if already_complete(self.ctx, self.restart):
            log.info("%s already complete: %s", self.name, self.ctx.phase_dir)
            return self.ctx.phase_dir

        state = load_last(self.ctx)
        self.build(state)
        self.probe = CalibrationProbe(self.data, self.run_config["calibration_states"], self.seed)
        self.score = score_spec(self.run_config, self.dataset.meta)
        self.recorder = PhaseRecorder(self.ctx, live=self.live)
        try:
            if state is not None:
                self.resume(state)
            else:
                self.evaluate_now()
            self._last_save = time.monotonic()
            self._bar = tqdm(
                total=self.total,
                initial=self.done(),
                unit=self.unit,
                disable=not self.progress,
                desc=f"{self.name} {self.task_name}/{self.method}/s{self.seed}",
                mininterval=5.0,
            )
            self.train()
        finally:
            if self._bar is not None:
                self._bar.close()
            self.close()
        rows = self.recorder.rows
        finish_phase(
            self.ctx,
            self.agent,
            dataclasses.asdict(self.counters),
            self.dataset.meta,
            self.recorder.wall_time(),
            rows[-1] if rows else None,
        )
        return self.ctx.phase_dir

    def resume(self, state: dict[str, Any]) -> None:
        """Continue exactly where the checkpoint ``state`` stopped: agent, RNGs, counters, rows."""
        self.agent.load_state_dict(state["agent"])
        restore_rng(state["rng"]["global"])
        self.sampler = generator_from_state(state["rng"]["sampler"])
        self.counters = self.counters_type(**state["counters"])
        self.recorder.load_state_dict(state["recorder"], *self.position())

    # ---- what each phase defines ------------------------------------------------------------
    def check(self, run: dict[str, Any]) -> None:
        """Refuse a run this phase cannot do (before anything is loaded)."""

    @abc.abstractmethod
    def build(self, state: dict[str, Any] | None) -> None:
        """Set ``agent``, ``sampler`` (numpy Generator of the batches), ``eval_envs`` and the
        phase's own state; ``state`` is the resume checkpoint or None."""

    @abc.abstractmethod
    def train(self) -> None:
        """The loop, until :meth:`done` reaches :attr:`total`."""

    @property
    @abc.abstractmethod
    def total(self) -> int:
        """The budget, in :attr:`unit`."""

    @abc.abstractmethod
    def done(self) -> int:
        """How much of the budget is spent, in :attr:`unit`."""

    @abc.abstractmethod
    def position(self) -> tuple[int, int]:
        """(gradient steps, online environment steps) so far: the row's ``grad_step, env_steps``."""

    def extra_state(self) -> dict[str, Any]:
        """Further checkpoint entries of the phase (restored by its :meth:`resume`)."""
        return {}

    def close(self) -> None:
        """Release the environments."""

    # ---- steps the loops share --------------------------------------------------------------
    def evaluate_now(self) -> None:
        """Evaluate the agent and write a row at the current position; counts ``eval_index``."""
        self.recorder.begin_eval()
        ev = evaluate(
            self.eval_envs,
            self.agent,
            self.budget.eval_episodes,
            self.seed,
            self.name,
            self.counters.eval_index,
            self.score,
            self.device,
        )
        self.recorder.add_row(*self.position(), ev, self.probe(self.agent))
        self.counters.eval_index += 1

    def checkpoint_overdue(self) -> bool:
        """True when the last checkpoint is older than ``checkpoint_minutes`` (or SIGTERM came)."""
        minutes = float(self.budget.checkpoint_minutes)
        return termination_requested() or time.monotonic() - self._last_save > 60.0 * minutes

    def save(self) -> None:
        """Write checkpoints/last.pt: agent, RNGs, counters, the record and :meth:`extra_state`."""
        rng = {"global": capture_rng(), "sampler": generator_state(self.sampler)}
        state = checkpoint_state(
            self.ctx, self.agent, self.recorder, dataclasses.asdict(self.counters), rng, self.extra_state()
        )
        save_last(self.ctx, state)
        self._last_save = time.monotonic()

    def stop_if_terminated(self, where: str) -> None:
        """After a checkpoint: stop the job if SIGTERM came."""
        if termination_requested():
            raise_terminated(self.name, where)

    def stop_if_asked(self, what: str) -> None:
        """The ``stop_after`` test hook: stop as if killed once :meth:`done` reaches it (not at the end)."""
        done = self.done()
        if self.stop_after is not None and self.stop_after <= done < self.total:
            raise StopRequested(f"stop requested after {what} {done}")

    def progress_bar(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)
