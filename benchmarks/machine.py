"""What every benchmark's results file records about the machine it ran on (one place)."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import torch


def machine_meta(**extra: Any) -> dict[str, Any]:
    """torch/Python versions, architecture, CPU count and load average now, the benchmark's own
    ``extra`` settings, and the time."""
    try:
        load: tuple[float, float, float] | None = os.getloadavg()
    except OSError:
        load = None
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_end": load,
        **extra,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
