"""One training phase (pre-training or fine-tuning) of one run: the skeleton both phases share.

:class:`TrainingPhase` is the shape of a phase: check the resolved run config and load the data,
return at once if the phase already completed, build the agent and the loop's state, resume from the
last checkpoint or evaluate the starting point, train (the phase's own loop, in named steps),
and finish (``final.pt``, then ``run.json``). Around it: the phase's identity and files
(:class:`PhaseContext`), the resume checkpoints (:func:`save_last`, :func:`load_last`), setting
unusable files aside, and the SIGTERM handling of batch jobs. The rows of ``metrics.csv`` are
kept by :class:`calql.training.recorder.PhaseRecorder`.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm import tqdm

from calql.atomic import set_aside, write_json
from calql.config import RewardSpec, TaskSpec
from calql.data.damage import load_or_set_aside
from calql.data.format import Dataset
from calql.errors import CalqlError, CheckpointError, ConfigError
from calql.provenance import provenance
from calql.training.buffers import OfflineData, training_arrays
from calql.training.checkpoint import check_identity, identity_diffs, load_checkpoint, save_checkpoint
from calql.training.config import phase_hash
from calql.training.evaluation import CalibrationProbe, evaluate, score_spec
from calql.training.recorder import LiveLogger, PhaseRecorder
from calql.training.run_spec import RunSpec
from calql.training.seeding import capture_rng, generator_from_state, generator_state, restore_rng

log = logging.getLogger(__name__)


class StopRequested(Exception):
    """Raised by the ``stop_after`` test hook to simulate a crash after a given point."""


class TrainingTerminated(CalqlError):
    """The job got SIGTERM (e.g. Slurm's time limit): a checkpoint was written, rerun to resume."""


#: Set by the SIGTERM handler of the CLI; the loops checkpoint at the next gradient step and stop.
_TERMINATE = threading.Event()


def install_sigterm_handler() -> None:
    """On SIGTERM, finish the current gradient step, write checkpoints/last.pt and exit.

    Slurm sends SIGTERM at the time limit and SIGKILL about 30 s later; without this, up to
    ``checkpoint_minutes`` of work would be lost. Only the CLI installs it (main thread).
    """

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        log.warning("received signal %d: checkpointing at the next gradient step, then stopping", signum)
        _TERMINATE.set()

    signal.signal(signal.SIGTERM, handler)


def termination_requested() -> bool:
    return _TERMINATE.is_set()


def raise_terminated(phase: str, where: str) -> None:
    raise TrainingTerminated(
        f"{phase} stopped by SIGTERM at {where}; checkpoint written, rerun the same command to resume"
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is '{name}' but no CUDA device is available")
    return device


def setup_torch(run: dict[str, Any]) -> torch.device:
    """One torch thread per job by default (train.threads); returns the device."""
    torch.set_num_threads(int(run["threads"]))
    return resolve_device(run["device"])


@dataclass
class PhaseContext:
    """Identity and locations of one phase of one run."""

    run: dict[str, Any]
    task: TaskSpec
    phase: str
    seed: int
    run_dir: Path
    device: torch.device
    obs_dim: int = 0
    act_dim: int = 0

    @property
    def phase_dir(self) -> Path:
        return self.run_dir / self.phase

    @property
    def last_path(self) -> Path:
        return self.phase_dir / "checkpoints" / "last.pt"

    @property
    def prev_path(self) -> Path:
        """The checkpoint before last.pt: the fallback when last.pt cannot be read."""
        return self.phase_dir / "checkpoints" / "prev.pt"

    @property
    def final_path(self) -> Path:
        return self.phase_dir / "final.pt"

    @property
    def run_json(self) -> Path:
        return self.phase_dir / "run.json"

    @property
    def metrics_path(self) -> Path:
        return self.phase_dir / "metrics.csv"

    @property
    def config_hash(self) -> str:
        return phase_hash(self.run, self.phase)

    def identity(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "task": self.run["task"],
            "method": self.run["method"],
            "seed": self.seed,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "config_hash": self.config_hash,
        }


#: Checkpoint identity fields naming the run: a mismatch means a wrong run folder (refused).
_RUN_FIELDS = ("phase", "task", "method", "seed")
#: Fields a deliberate config or dataset change alters: such a checkpoint is set aside.
_CONFIG_FIELDS = ("obs_dim", "act_dim", "config_hash")


def load_training_data(ctx: PhaseContext, dataset_path: Path) -> tuple[Dataset, OfflineData]:
    """The labeled dataset (rewards re-labeled if the method uses its own transform) on the device."""
    dataset = load_or_set_aside(Path(dataset_path), ctx.run["task"], "label")
    reward = RewardSpec(**ctx.run["reward"])
    arrays = training_arrays(dataset, reward, ctx.run["gamma"], ctx.task.reward)
    ctx.obs_dim, ctx.act_dim = dataset.obs_dim, dataset.act_dim
    return dataset, OfflineData(arrays, ctx.device)


def remove_stale_temporaries(ctx: PhaseContext) -> None:
    """Delete ``*.tmp-<pid>`` files a killed job left behind (never complete outputs)."""
    if ctx.phase_dir.exists():
        for tmp in ctx.phase_dir.glob("**/*.tmp-*"):
            tmp.unlink(missing_ok=True)


def already_complete(ctx: PhaseContext, restart: bool) -> bool:
    """True if this phase finished before with the same config; clears it first with ``restart``."""
    remove_stale_temporaries(ctx)
    if restart and ctx.phase_dir.exists():
        log.warning("--restart: removing %s", ctx.phase_dir)
        shutil.rmtree(ctx.phase_dir)
        return False
    if not (ctx.run_json.exists() and ctx.final_path.exists() and ctx.metrics_path.exists()):
        return False
    record = json.loads(ctx.run_json.read_text())
    if record.get("status") == "complete" and record.get("config_hash") == ctx.config_hash:
        return True
    raise CheckpointError(
        f"{ctx.phase_dir} holds a finished {ctx.phase} with another config (hash "
        f"{record.get('config_hash')}, this run {ctx.config_hash}); rerun with --restart to replace it"
    )


def checkpoint_state(
    ctx: PhaseContext,
    agent: Any,
    recorder: PhaseRecorder,
    counters: dict[str, Any],
    rng: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        **ctx.identity(),
        "run_config": ctx.run,
        "agent": agent.state_dict(),
        "counters": dict(counters),
        "rng": rng,
        "recorder": recorder.state_dict(),
        **(extra or {}),
    }


def save_last(ctx: PhaseContext, state: dict[str, Any]) -> None:
    """Write checkpoints/last.pt, keeping the one before as prev.pt (the fallback if last.pt is
    ever unreadable)."""
    if ctx.last_path.exists():
        os.replace(ctx.last_path, ctx.prev_path)
    save_checkpoint(ctx.last_path, state)
    log.info("checkpoint %s (%s)", ctx.last_path, ", ".join(f"{k}={v}" for k, v in state["counters"].items()))


def load_last(ctx: PhaseContext) -> dict[str, Any] | None:
    """The newest usable resume checkpoint of this phase (last.pt, else prev.pt), or None.

    A checkpoint of another run (task, method, seed) is refused: the run folder is wrong. One that
    cannot be read, or was written with another config or dataset, is set aside with a warning,
    and the phase resumes from the previous one or starts over.
    """
    moved = False
    for path in (ctx.last_path, ctx.prev_path):
        if not path.exists():
            continue
        moved = True  # unless it is used below
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            log.warning("%s; moved it aside to %s", exc, set_aside(path, "unreadable"))
            continue
        check_identity(state, ctx.identity(), path, fields=_RUN_FIELDS)
        diffs = identity_diffs(state, ctx.identity(), _CONFIG_FIELDS)
        if diffs:
            log.warning(
                "checkpoint %s was written with another config or dataset (%s): moved it aside to %s",
                path,
                "; ".join(diffs),
                set_aside(path, "other-config"),
            )
            continue
        log.info(
            "resuming %s from %s (%s)", ctx.phase, path, ", ".join(f"{k}={v}" for k, v in state["counters"].items())
        )
        return state
    if moved:
        log.warning("no usable checkpoint left: %s starts over", ctx.phase)
    return None


def finish_phase(
    ctx: PhaseContext, agent: Any, recorder: PhaseRecorder, counters: dict[str, Any], dataset_meta: dict[str, Any]
) -> None:
    """Write final.pt, then run.json (status complete) last; drop the resume checkpoint."""
    save_checkpoint(
        ctx.final_path,
        {**ctx.identity(), "run_config": ctx.run, "agent": agent.state_dict(), "counters": dict(counters)},
    )
    record = {
        "status": "complete",
        "phase": ctx.phase,
        "task": ctx.run["task"],
        "method": ctx.run["method"],
        "seed": ctx.seed,
        "counters": dict(counters),
        "wall_time_s": recorder.wall_time(),
        "device": str(ctx.device),
        "dataset": {
            "checksum": dataset_meta.get("checksum"),
            "env_id": dataset_meta.get("env_id"),
            "source": dataset_meta.get("source"),
        },
        "final_row": {k: v for k, v in recorder.rows[-1].items()} if recorder.rows else None,
        **provenance(ctx.run, ctx.seed),
        "config_hash": ctx.config_hash,  # the phase hash (checkpoint identity), not the whole-run hash
        "run_config_hash": provenance(ctx.run)["config_hash"],
    }
    write_json(ctx.run_json, record)
    ctx.last_path.unlink(missing_ok=True)
    ctx.prev_path.unlink(missing_ok=True)
    log.info("%s complete: %s", ctx.phase, ctx.phase_dir)


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
        self.budget: dict[str, Any] = self.run_config[self.name]
        self.device = setup_torch(self.run_config)
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
        finish_phase(self.ctx, self.agent, self.recorder, dataclasses.asdict(self.counters), self.dataset.meta)
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
            self.budget["eval_episodes"],
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
        minutes = float(self.budget["checkpoint_minutes"])
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
