"""User-facing error types: the CLI prints these as one clear line instead of a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def describe(exc: BaseException) -> str:
    """``Type: message``, or only the type when the message is empty (an ``EOFError()`` from a
    truncated pickle has none), so that no error text ends with an empty reason."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class CalqlError(Exception):
    """Base class of every error caused by bad input or a failed external resource."""


class ConfigError(CalqlError):
    """A config key or value is invalid."""


class UsageError(CalqlError):
    """Command-line arguments that do not fit together (argparse cannot express the rule)."""


class DatasetError(CalqlError):
    """A dataset is missing, corrupted, truncated or inconsistent."""


class DownloadError(DatasetError):
    """A download failed; the message names the URL and where to put the file by hand."""


class EnvMismatchError(CalqlError):
    """The environment's observation layout differs from the dataset's."""


class CheckpointError(CalqlError):
    """A checkpoint is missing or does not match the run (method, sizes)."""


class TrainingDivergedError(CalqlError):
    """A loss became NaN/inf; the message names the step and the loss."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' Did you mean: a, b?' for close matches of ``name`` among ``choices`` (or '')."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""
