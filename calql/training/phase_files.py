"""One phase's folder: its identity and files, skipping a finished phase, and finishing one.

The names of the files come from the run-file contract (:mod:`calql.run_files`); a phase is
finished when ``run.json`` says ``complete`` with the current phase hash (written last, after
``final.pt``, so a crash never leaves a finished-looking phase).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from calql.atomic import write_json
from calql.config import TaskSpec
from calql.errors import CheckpointError
from calql.provenance import provenance
from calql.run_files import CHECKPOINTS_DIR, FINAL_PT, METRICS_CSV, RUN_JSON, phase_hash
from calql.run_files.layout import LAST_PT, PREV_PT
from calql.training.checkpoint import save_checkpoint

log = logging.getLogger(__name__)


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
        return self.phase_dir / CHECKPOINTS_DIR / LAST_PT

    @property
    def prev_path(self) -> Path:
        """The checkpoint before last.pt: the fallback when last.pt cannot be read."""
        return self.phase_dir / CHECKPOINTS_DIR / PREV_PT

    @property
    def final_path(self) -> Path:
        return self.phase_dir / FINAL_PT

    @property
    def run_json(self) -> Path:
        return self.phase_dir / RUN_JSON

    @property
    def metrics_path(self) -> Path:
        return self.phase_dir / METRICS_CSV

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


def finish_phase(
    ctx: PhaseContext,
    agent: Any,
    counters: dict[str, Any],
    dataset_meta: dict[str, Any],
    wall_time_s: float,
    final_row: dict[str, Any] | None,
) -> None:
    """Write final.pt, then run.json (status complete) last; drop the resume checkpoint.
    ``final_row`` is the last metrics row, ``wall_time_s`` the phase's time over all segments."""
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
        "wall_time_s": wall_time_s,
        "device": str(ctx.device),
        "dataset": {
            "checksum": dataset_meta.get("checksum"),
            "env_id": dataset_meta.get("env_id"),
            "source": dataset_meta.get("source"),
        },
        "final_row": dict(final_row) if final_row is not None else None,
        **provenance(ctx.run, ctx.seed),
        "config_hash": ctx.config_hash,  # the phase hash (checkpoint identity), not the whole-run hash
        "run_config_hash": provenance(ctx.run)["config_hash"],
    }
    write_json(ctx.run_json, record)
    ctx.last_path.unlink(missing_ok=True)
    ctx.prev_path.unlink(missing_ok=True)
    log.info("%s complete: %s", ctx.phase, ctx.phase_dir)
