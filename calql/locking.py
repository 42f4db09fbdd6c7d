"""Exclusive locks between processes: ``flock`` on a lock file that names its holder.

The kernel releases an ``flock`` when its process ends, however it ends, so a lock is never stale
and never needs deleting; the file's content only says who holds it (PID, host, what, since when).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from calql.errors import CalqlError

log = logging.getLogger(__name__)

#: Seconds between "still waiting" messages while another process holds a lock.
ANNOUNCE_EVERY = 60.0


class LockedError(CalqlError):
    """Another live process holds the lock (the message names its PID and host)."""


def holder(path: Path) -> str:
    """Who holds the lock, from what the holder wrote into the lock file."""
    try:
        info = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another process (it has not written its PID yet)"
    return (
        f"PID {info['pid']} on host {info.get('host', '?')} ({info.get('what', '?')}, since {info.get('started', '?')})"
    )


@contextlib.contextmanager
def exclusive_lock(
    path: Path, what: str, wait: float | None = None, poll: float = 0.5, busy: str = "is locked"
) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` while the block runs.

    ``what``: what the holder does (written into the file). ``wait``: seconds to wait for another
    holder (None: until it ends); then :class:`LockedError` naming it. ``busy``: the verb phrase of
    the messages ("<path's folder> is being trained by PID ...").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        deadline = None if wait is None else time.monotonic() + wait
        announced = -ANNOUNCE_EVERY
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise LockedError(f"{path.parent} {busy} {holder(path)}") from None
                if now - announced >= ANNOUNCE_EVERY:
                    log.warning("%s %s %s; waiting for it to finish", path.parent, busy, holder(path))
                    announced = now
                time.sleep(poll)
        fh.seek(0)
        fh.truncate()
        fh.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "what": what,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "argv": sys.argv,
                }
            )
        )
        fh.flush()
        yield  # closing the file releases the lock
