"""SIGTERM in a batch job: finish the current gradient step, checkpoint, stop.

Slurm sends SIGTERM at the time limit and SIGKILL about 30 s later; the training loops poll
:func:`termination_requested` after every gradient step, write ``checkpoints/last.pt`` and raise
:class:`TrainingTerminated` (a rerun resumes). Only the CLI installs the handler (main thread).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from calql.errors import CalqlError

log = logging.getLogger(__name__)


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
