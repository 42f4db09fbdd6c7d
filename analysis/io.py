"""Atomic writers and checked readers for the analysis outputs."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from calql.atomic import atomic_path, write_text
from calql.errors import CalqlError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def write_csv(frame: pd.DataFrame, target: str | os.PathLike[str]) -> None:
    """Write a CSV so that a crash never leaves a complete-looking file."""
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)  # shortest round-trip floats: re-reading gives the same numbers


def read_table(path: str | os.PathLike[str], required: Iterable[str] = ()) -> pd.DataFrame:
    """Read a summary CSV, failing with the file's name when it is absent or lacks columns."""
    path = Path(path)
    if not path.exists():
        raise CalqlError(f"{path} not found; run `python -m analysis aggregate` first")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CalqlError(f"{path} lacks column(s) {missing}")
    return frame


def save_figure(fig: Figure, stem: Path, formats: Iterable[str], dpi: int) -> list[Path]:
    """Save ``fig`` as ``stem.<fmt>`` for each format, atomically; return the paths."""
    paths = []
    for fmt in formats:
        target = stem.with_suffix(f".{fmt}")
        with atomic_path(target) as tmp:
            # Fixed metadata keeps PDFs byte-stable across runs (no creation date).
            metadata = {"CreationDate": None} if fmt == "pdf" else ({"Date": None} if fmt == "svg" else None)
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
        paths.append(target)
    return paths


__all__ = ["read_table", "save_figure", "write_csv", "write_text"]
