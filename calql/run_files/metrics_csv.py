"""The per-phase ``metrics.csv``: one row per evaluation point (columns fixed by docs/design.md).

Rows are kept in memory (they are few: one per evaluation) and the whole file is rewritten
atomically at every evaluation, so a crash leaves the previous complete file, never a torn row.
Floats are written with ``repr`` so reading the file back gives the exact same numbers, which the
resume test relies on.

Timing columns (excluded when comparing runs): ``perf/grad_steps_per_s`` and
``perf/env_steps_per_s`` are the steps since the previous row divided by the loop time since then,
evaluation excluded (fine-tuning: rollouts + labeling + gradient steps); ``wall_time_s`` is the
phase's wall time so far, summed over resumed segments (work redone after a crash is not counted).
Empty cells: no value (e.g. ``train/*`` at the first row, ``perf/env_steps_per_s`` in pre-training).

This is the one reader of the file (training's resume test, the MLflow import, the run checks and
the analysis use it), so every reader sees the same rows: a row repeated for an evaluation point
((``grad_step``, ``env_steps``) seen before, as a resumed phase of an older version could write)
is dropped in favour of the later one, the row of the finished run.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

from calql.atomic import write_text

log = logging.getLogger(__name__)

#: Leading columns, in this order; the analysis reads these by name.
BASE_COLUMNS = (
    "task",
    "method",
    "seed",
    "phase",
    "grad_step",
    "env_steps",
    "score",
    "success_rate",
    "return_mean",
    "q_policy",
    "mc_return",
    "q_data",
)
#: Trailing columns; excluded when comparing runs for reproducibility (they measure the machine).
TIMING_COLUMNS = ("perf/grad_steps_per_s", "perf/env_steps_per_s", "wall_time_s")
TRAIN_PREFIX = "train/"
#: How the evaluation episodes ended (lengths, terminations; calql.training.evaluation.evaluate).
EVAL_PREFIX = "eval/"


def columns_of(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Base columns, then every ``eval/*`` and ``train/*`` column seen (each sorted), then the
    timing columns."""
    seen = {k for row in rows for k in row}
    evals = sorted(k for k in seen if k.startswith(EVAL_PREFIX))
    train = sorted(k for k in seen if k.startswith(TRAIN_PREFIX))
    return [*BASE_COLUMNS, *evals, *train, *TIMING_COLUMNS]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def render_csv(rows: Sequence[dict[str, Any]]) -> str:
    cols = columns_of(rows)
    unknown = {k for row in rows for k in row} - set(cols)
    if unknown:
        raise ValueError(f"metrics row has columns outside the metrics.csv contract: {sorted(unknown)}")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        writer.writerow([_fmt(row.get(c)) for c in cols])
    return buf.getvalue()


def write_metrics(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` to ``path`` atomically."""
    write_text(path, render_csv(rows))


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a metrics.csv back: numbers as int/float, empty cells as None, text as str; of rows
    repeating an evaluation point, the last (module docstring). ValueError if it has no header."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise ValueError(f"{path} is empty (no header row)")
        rows = [{key: _parse(key, text) for key, text in raw.items()} for raw in reader]
    return drop_repeated_evaluations(rows, path)


def drop_repeated_evaluations(rows: list[dict[str, Any]], where: Any = "metrics") -> list[dict[str, Any]]:
    """``rows`` without those whose (grad_step, env_steps) a later row repeats (order kept)."""
    last = {(row.get("grad_step"), row.get("env_steps")): i for i, row in enumerate(rows)}
    if len(last) == len(rows):
        return rows
    log.warning("%s: %d repeated evaluation row(s) (resume?); keeping the last of each", where, len(rows) - len(last))
    keep = set(last.values())
    return [row for i, row in enumerate(rows) if i in keep]


def _parse(key: str, text: str | None) -> Any:
    if text is None or text == "":
        return None
    if key in ("task", "method", "phase"):
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text
