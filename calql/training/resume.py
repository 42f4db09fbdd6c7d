"""Resume checkpoints of an unfinished phase: ``checkpoints/last.pt`` and the one before.

A checkpoint holds everything the loop needs to continue bit-identically (agent, RNG states,
counters, the metrics rows so far, the phase's own state such as the online buffer). One of
another run is refused; one that cannot be read, or of another config or dataset, is set aside.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from calql.atomic import set_aside
from calql.errors import CheckpointError
from calql.training.checkpoint import check_identity, identity_diffs, load_checkpoint, save_checkpoint
from calql.training.phase_files import PhaseContext

if TYPE_CHECKING:
    from calql.training.recorder import PhaseRecorder

log = logging.getLogger(__name__)

#: Checkpoint identity fields naming the run: a mismatch means a wrong run folder (refused).
_RUN_FIELDS = ("phase", "task", "method", "seed")
#: Fields a deliberate config or dataset change alters: such a checkpoint is set aside.
_CONFIG_FIELDS = ("obs_dim", "act_dim", "config_hash")


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
