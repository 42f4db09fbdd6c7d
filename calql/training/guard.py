"""One writer per run folder, and a record of why a phase failed.

Two processes training the same run would write the same checkpoints and metrics: the jobs of a
SIGKILLed ``snakemake`` keep running, and the next ``snakemake`` starts the same jobs again. Every
training process therefore holds an exclusive lock on ``RUN/.lock`` for its lifetime
(:mod:`calql.locking`: released by the kernel when the process ends, so it is never stale).

A phase that stops with an error leaves ``RUN/<phase>/error.json`` (the error and where it
happened): Snakemake deletes a failed job's outputs, and the analysis lists this reason in
``missing.csv`` instead of a bare "no metrics.csv".
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from calql.atomic import write_json
from calql.locking import LockedError, exclusive_lock
from calql.run_files import ERROR_JSON

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(run_dir: Path, phase: str, wait: float | None = None) -> Iterator[None]:
    """Hold the run folder's exclusive lock while the block runs; ``wait`` seconds for another
    holder (None: until it ends), then fail naming it."""
    try:
        with exclusive_lock(Path(run_dir) / LOCK_NAME, phase, wait, busy="is being trained by"):
            yield
    except LockedError as exc:
        raise LockedError(
            f"{exc}: only one process may write a run. Wait for it to finish (then rerun: a finished "
            "phase is not trained again) or stop that process; the lock is released when it exits"
        ) from None


@contextlib.contextmanager
def failure_record(phase_dir: Path) -> Iterator[None]:
    """Write ``phase_dir/error.json`` if the block raises; clear an old one when it starts."""
    path = Path(phase_dir) / ERROR_JSON
    path.unlink(missing_ok=True)
    try:
        yield
    except BaseException as exc:
        write_json(
            path,
            {
                "error": type(exc).__name__,
                "message": str(exc),
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        raise


def read_failure(phase_dir: Path) -> str | None:
    """``"<Error>: <message>"`` from a phase's error.json, or None when it has none."""
    try:
        info = json.loads((Path(phase_dir) / ERROR_JSON).read_text())
    except (OSError, ValueError):
        return None
    return f"{info.get('error', 'error')}: {info.get('message', '')} (at {info.get('time', '?')})"
