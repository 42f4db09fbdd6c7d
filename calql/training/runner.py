"""What pre-training and fine-tuning share: run setup, the per-phase record, and finishing a phase.

:class:`PhaseRecorder` owns the evaluation rows of one phase (``metrics.csv``), the running means
of the training losses since the last evaluation (``train/*`` columns), the timers behind the
``perf/*`` and ``wall_time_s`` columns, the divergence check, and the optional live MLflow run.
Its state goes into every checkpoint so a resumed phase writes exactly the same rows.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from calql.atomic import write_json
from calql.config import RewardSpec, TaskSpec
from calql.data.format import Dataset, load_dataset
from calql.errors import CalqlError, CheckpointError, ConfigError, DatasetError, TrainingDivergedError
from calql.provenance import provenance
from calql.tracking.metrics import TRAIN_PREFIX, write_metrics
from calql.training.buffers import OfflineData, training_arrays
from calql.training.checkpoint import check_identity, identity_diffs, load_checkpoint, save_checkpoint
from calql.training.config import phase_hash

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
    raise TrainingTerminated(f"{phase} stopped by SIGTERM at {where}; checkpoint written, "
                             "rerun the same command to resume")


class LiveLogger(Protocol):
    def log_row(self, row: dict[str, Any], step: int) -> None: ...
    def finish(self, ok: bool) -> None: ...


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
        return {"phase": self.phase, "task": self.run["task"], "method": self.run["method"], "seed": self.seed,
                "obs_dim": self.obs_dim, "act_dim": self.act_dim, "config_hash": self.config_hash}


#: Checkpoint identity fields naming the run: a mismatch means a wrong run folder (refused).
_RUN_FIELDS = ("phase", "task", "method", "seed")
#: Fields a deliberate config or dataset change alters: such a checkpoint is set aside.
_CONFIG_FIELDS = ("obs_dim", "act_dim", "config_hash")


def set_aside(path: Path, reason: str) -> Path:
    """Rename a file this run cannot use to ``<name>.<reason>-<UTC time>`` (kept, never deleted),
    so that no rerun needs a file removed by hand."""
    target = path.with_name(f"{path.name}.{reason}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    os.replace(path, target)
    return target


def _unusable_dataset(path: Path, exc: DatasetError, task: str) -> DatasetError:
    """The error of a training job whose labeled dataset is corrupt: moved aside so that the
    workflow relabels it (its output is then missing), with the commands that rebuild it."""
    rebuild = ("rerun the same `snakemake` command (its `label` job rebuilds the file; the training "
               f"jobs of {task} then run again), or by hand: `calql label --config <config> --task {task} "
               f"--dataset <raw dataset> --out {path}`")
    if not path.exists():
        moved = sorted(path.parent.glob(f"{path.name}.corrupt-*"))
        hint = f" (another job moved it aside as corrupt: {moved[-1]})" if moved else ""
        return DatasetError(f"{exc}{hint}; to rebuild it, {rebuild}")
    try:
        aside = set_aside(path, "corrupt")
    except FileNotFoundError:  # another job of the same task moved it a moment ago
        return DatasetError(f"{exc}; another job moved it aside. To rebuild it, {rebuild}")
    log.error("moved the unusable dataset %s aside to %s", path, aside)
    return DatasetError(f"{exc}. Moved it aside to {aside}; to rebuild it, {rebuild}")


def load_training_data(ctx: PhaseContext, dataset_path: Path) -> tuple[Dataset, OfflineData]:
    """The labeled dataset (rewards re-labeled if the method uses its own transform) on the device."""
    try:
        dataset = load_dataset(dataset_path)
    except DatasetError as exc:
        raise _unusable_dataset(Path(dataset_path), exc, ctx.run["task"]) from exc
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


@dataclass
class PhaseRecorder:
    """Rows of metrics.csv, running loss means, timers, divergence check, live logging."""

    ctx: PhaseContext
    live: LiveLogger | None = None
    check_every: int = 1
    rows: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    elapsed_before: float = 0.0

    def __post_init__(self) -> None:
        self._keys: tuple[str, ...] | None = None
        self._vec: torch.Tensor | None = None
        self._t_start = time.perf_counter()
        self._t_mark = self._t_start
        self._steps_mark = (0, 0)
        self._eval_started: float | None = None
        # A host sync per step costs little on CPU; on a GPU check every 100 steps (window named).
        if self.ctx.device.type != "cpu":
            self.check_every = max(self.check_every, 100)

    # ---- training losses ------------------------------------------------------------------
    def accumulate(self, metrics: dict[str, torch.Tensor], step: int) -> None:
        """Add one update's scalars to the running sums: one stacked float64 vector on the device
        (a few tensor ops per step whatever the number of losses, and no host sync)."""
        keys = tuple(metrics)
        values = torch.stack([v.detach().reshape(()) for v in metrics.values()]).to(torch.float64)
        if self._vec is None or self._keys is None:  # first step of a window
            self._keys, self._vec = keys, values.clone()
        elif keys == self._keys:
            self._vec += values
        else:  # rare: the agent reported other losses within this window; sum per key (union)
            merged = self._sums_dict()
            for i, k in enumerate(keys):
                merged[k] = merged[k] + values[i] if k in merged else values[i].clone()
            self._keys, self._vec = tuple(merged), torch.stack(list(merged.values()))
        self.count += 1
        if step % self.check_every == 0:
            if self.check_every == 1:
                self._check_finite(keys, values, step)
            else:
                self._check_finite(self._keys, self._vec, step)

    def _sums_dict(self) -> dict[str, torch.Tensor]:
        if self._vec is None or self._keys is None:
            return {}
        return {k: self._vec[i] for i, k in enumerate(self._keys)}

    def _check_finite(self, keys: tuple[str, ...], values: torch.Tensor, step: int) -> None:
        if bool(torch.isfinite(values).all()):
            return
        bad = [(k, v) for k, v in zip(keys, values.tolist()) if not math.isfinite(v)]
        where = (f"gradient step {step}" if self.check_every == 1
                 else f"gradient steps {step - self.check_every + 1}..{step}")
        raise TrainingDivergedError(
            f"{self.ctx.phase} of {self.ctx.run['task']}/{self.ctx.run['method']}/seed{self.ctx.seed} diverged at "
            f"{where}: " + ", ".join(f"{k} = {v}" for k, v in bad)
            + " (lower the learning rates or check the rewards; the last checkpoint is kept)"
        )

    def _train_means(self) -> dict[str, float]:
        if self.count == 0 or self._vec is None or self._keys is None:
            return {}
        sums = self._vec.tolist()
        out = {f"{TRAIN_PREFIX}{k}": sums[i] / self.count for i, k in enumerate(self._keys)}
        self._keys, self._vec, self.count = None, None, 0
        return out

    # ---- evaluation rows ------------------------------------------------------------------
    def begin_eval(self) -> None:
        self._eval_started = time.perf_counter()

    def wall_time(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t_start)

    def add_row(self, grad_step: int, env_steps: int, evaluation: dict[str, float],
                calibration: dict[str, float]) -> dict[str, Any]:
        """Append an evaluation row, rewrite metrics.csv and log it live."""
        now = time.perf_counter()
        loop_time = (self._eval_started or now) - self._t_mark
        d_grad, d_env = grad_step - self._steps_mark[0], env_steps - self._steps_mark[1]
        run = self.ctx.run
        row: dict[str, Any] = {
            "task": run["task"], "method": run["method"], "seed": self.ctx.seed, "phase": self.ctx.phase,
            "grad_step": int(grad_step), "env_steps": int(env_steps),
            **evaluation, **calibration, **self._train_means(),
            "perf/grad_steps_per_s": d_grad / loop_time if d_grad and loop_time > 0 else None,
            "perf/env_steps_per_s": d_env / loop_time if d_env and loop_time > 0 else None,
            "wall_time_s": self.wall_time(),
        }
        self.rows.append(row)
        write_metrics(self.ctx.metrics_path, self.rows)
        if self.live is not None:
            self.live.log_row(row, env_steps if self.ctx.phase == "finetune" else grad_step)
        log.info("%s %s: %s", self.ctx.phase, _where(grad_step, env_steps, self.ctx.phase), _summary(row))
        self._t_mark = time.perf_counter()
        self._steps_mark = (grad_step, env_steps)
        self._eval_started = None
        return row

    # ---- checkpoint state -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows], "sums": {k: v.cpu().clone() for k, v in self._sums_dict().items()},
                "count": self.count, "wall_time": self.wall_time()}

    def load_state_dict(self, state: dict[str, Any], grad_step: int, env_steps: int) -> None:
        self.rows = [dict(r) for r in state["rows"]]
        sums = state["sums"]
        self._keys = tuple(sums) if sums else None
        self._vec = torch.stack([v.to(self.ctx.device, torch.float64) for v in sums.values()]) if sums else None
        self.count = int(state["count"])
        self.elapsed_before = float(state["wall_time"])
        self._t_start = self._t_mark = time.perf_counter()
        self._steps_mark = (grad_step, env_steps)


def _where(grad_step: int, env_steps: int, phase: str) -> str:
    return f"env step {env_steps} (grad step {grad_step})" if phase == "finetune" else f"grad step {grad_step}"


def _summary(row: dict[str, Any]) -> str:
    keys = ("score", "success_rate", "return_mean", "q_policy", "mc_return")
    return ", ".join(f"{k}={row[k]:.3g}" for k in keys if isinstance(row.get(k), float))


def checkpoint_state(ctx: PhaseContext, agent: Any, recorder: PhaseRecorder, counters: dict[str, Any],
                     rng: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**ctx.identity(), "run_config": ctx.run, "agent": agent.state_dict(), "counters": dict(counters),
            "rng": rng, "recorder": recorder.state_dict(), **(extra or {})}


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
            log.warning("checkpoint %s was written with another config or dataset (%s): moved it aside to "
                        "%s", path, "; ".join(diffs), set_aside(path, "other-config"))
            continue
        log.info("resuming %s from %s (%s)", ctx.phase, path,
                 ", ".join(f"{k}={v}" for k, v in state["counters"].items()))
        return state
    if moved:
        log.warning("no usable checkpoint left: %s starts over", ctx.phase)
    return None


def finish_phase(ctx: PhaseContext, agent: Any, recorder: PhaseRecorder, counters: dict[str, Any],
                 dataset_meta: dict[str, Any]) -> None:
    """Write final.pt, then run.json (status complete) last; drop the resume checkpoint."""
    save_checkpoint(ctx.final_path, {**ctx.identity(), "run_config": ctx.run, "agent": agent.state_dict(),
                                     "counters": dict(counters)})
    record = {
        "status": "complete",
        "phase": ctx.phase,
        "task": ctx.run["task"],
        "method": ctx.run["method"],
        "seed": ctx.seed,
        "counters": dict(counters),
        "wall_time_s": recorder.wall_time(),
        "device": str(ctx.device),
        "dataset": {"checksum": dataset_meta.get("checksum"), "env_id": dataset_meta.get("env_id"),
                    "source": dataset_meta.get("source")},
        "final_row": {k: v for k, v in recorder.rows[-1].items()} if recorder.rows else None,
        **provenance(ctx.run, ctx.seed),
        "config_hash": ctx.config_hash,  # the phase hash (checkpoint identity), not the whole-run hash
        "run_config_hash": provenance(ctx.run)["config_hash"],
    }
    write_json(ctx.run_json, record)
    ctx.last_path.unlink(missing_ok=True)
    ctx.prev_path.unlink(missing_ok=True)
    log.info("%s complete: %s", ctx.phase, ctx.phase_dir)
