"""Checkpoints: everything a phase needs to continue exactly where it stopped.

A checkpoint holds the agent (networks, targets, optimizers, temperatures), the global RNG
states, the loop's own sampler RNG, the online replay buffer, counters, the metrics rows written
so far and the running means of the training losses. With the environments re-seeded per episode
(:mod:`calql.training.seeding`) and checkpoints taken between episodes, a resumed run on CPU
reproduces an uninterrupted one bit for bit.

Identity fields (format, phase, task, method, seed, obs/act sizes, phase-config hash) are checked
before anything is loaded; a mismatch raises :class:`CheckpointError` saying what differs (when
resuming, :func:`calql.training.resume.load_last` instead sets aside a checkpoint of another config
or dataset, and an unreadable one).
Files are written atomically and loaded with ``weights_only=False``: they contain numpy RNG
states, and they are this program's own outputs (never load checkpoints from untrusted sources).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from calql.atomic import atomic_path
from calql.errors import CheckpointError, describe

FORMAT_VERSION = 1
#: Identity fields compared between a checkpoint and the run trying to use it.
IDENTITY = ("phase", "task", "method", "seed", "obs_dim", "act_dim", "config_hash")


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` (must contain the identity fields) atomically."""
    missing = [k for k in IDENTITY if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks identity fields {missing}")
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT_VERSION, **state}, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated or not a calql checkpoint?): {describe(exc)}"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a calql checkpoint of format {FORMAT_VERSION}")
    return state


def identity_diffs(state: dict[str, Any], expected: dict[str, Any], fields: tuple[str, ...] = IDENTITY) -> list[str]:
    """One line per identity field of ``state`` that differs from ``expected``."""
    return [
        f"{k}: checkpoint has {state.get(k)!r}, this run has {expected[k]!r}"
        for k in fields
        if k in expected and state.get(k) != expected[k]
    ]


def check_identity(
    state: dict[str, Any], expected: dict[str, Any], path: str | os.PathLike[str], fields: tuple[str, ...] = IDENTITY
) -> None:
    """Raise CheckpointError listing every identity field of ``state`` that differs from ``expected``."""
    diffs = identity_diffs(state, expected, fields)
    if diffs:
        hint = (
            " The config changed since the checkpoint was written: restore it, or delete the checkpoint to start over."
            if any(d.startswith("config_hash") for d in diffs)
            else ""
        )
        raise CheckpointError(f"checkpoint {path} does not match this run: " + "; ".join(diffs) + "." + hint)
