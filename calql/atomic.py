"""Atomic file writes: an output either exists complete or not at all.

Writers produce ``<name>.tmp-<pid>`` next to the target and ``os.replace`` it into place only
after it was fully written and flushed, so a crash (or a killed Slurm job) never leaves a
file that looks complete to Snakemake or to a later run.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path; on success move it onto ``target``, on error delete it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def set_aside(path: str | os.PathLike[str], reason: str) -> Path:
    """Rename a file a run cannot use to ``<name>.<reason>-<UTC time>`` (kept, never deleted), so
    that no rerun needs a file removed by hand: the workflow sees the output missing and rebuilds it."""
    path = Path(path)
    target = path.with_name(f"{path.name}.{reason}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    os.replace(path, target)
    return target
