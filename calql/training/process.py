"""Process-wide settings of a training job, made in one place before anything is built.

A training job is one process per (run, phase): :func:`setup_process` sets torch's thread count
(``train.threads``: one per job by default, so that parallel jobs do not oversubscribe the cores),
on a CPU glibc's allocator thresholds (:func:`configure_cpu_allocator`), and picks the device.
Benchmarks that build agents themselves call :func:`configure_cpu_allocator` to time the same thing.

CPU allocator: glibc serves allocations above a threshold (dynamic, at most 32 MiB) with fresh
mmap pages and trims freed heap memory back to the OS, so the many-MiB activations of every update
(e.g. the critic's 7,936 x 256 rows, 8 MiB) page-fault anew each step: measured ~970 minor faults
and ~2 ms of kernel time per small Cal-QL update, ~5,900 faults and ~9 ms per paper-size one.
Fixing the thresholds with ``mallopt`` removes nearly all of them (33 and 0 faults). The only cost
is that the process keeps its peak heap (what one update needs) instead of shrinking between updates.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from typing import Any

import torch

from calql.errors import ConfigError

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_done = False


def configure_cpu_allocator(
    mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30, top_pad: int = 64 << 20
) -> bool:
    """Raise glibc's mmap/trim thresholds and heap top pad once per process; True if applied
    (Linux/glibc only; elsewhere nothing changes)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = all(
        bool(mallopt(opt, int(value)))
        for opt, value in (
            (_M_MMAP_THRESHOLD, mmap_threshold),
            (_M_TRIM_THRESHOLD, trim_threshold),
            (_M_TOP_PAD, top_pad),
        )
    )
    _done = ok
    log.debug("glibc allocator thresholds set (mmap %d, trim %d): %s", mmap_threshold, trim_threshold, ok)
    return ok


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is '{name}' but no CUDA device is available")
    return device


def setup_process(run: dict[str, Any]) -> torch.device:
    """Torch threads (``train.threads``) and the CPU allocator for this process; returns the device."""
    torch.set_num_threads(int(run["threads"]))
    device = resolve_device(run["device"])
    if device.type == "cpu":
        configure_cpu_allocator()
    return device
