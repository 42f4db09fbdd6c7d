"""Progress bars that behave in batch jobs: quiet when logging is quiet, sparse when not a TTY."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; hidden below INFO logging, refreshed every 30 s in log files."""
    kwargs.setdefault("disable", not logging.getLogger("calql").isEnabledFor(logging.INFO))
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
