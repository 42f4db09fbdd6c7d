"""Find, check and load run files (docs/design.md, "Run files").

Layout (:class:`calql.runs.RunKey`): ``<runs_dir>/<task>/<method>/seed<seed>/{pretrain,finetune}/``,
each with ``metrics.csv`` and ``run.json``.
A phase counts as complete only when its ``run.json`` says ``"status": "complete"`` (training
writes it last, atomically). Every expected phase that is absent, unfinished, failed or
unreadable becomes a :class:`PhaseProblem`, so nothing is dropped without a trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calql.runs import RunKey
from calql.training.config import run_phases
from calql.training.guard import read_failure

log = logging.getLogger(__name__)

#: Columns without which a metrics file cannot be analysed.
REQUIRED_COLUMNS = ("grad_step", "env_steps", "score")
#: Columns the analysis uses when present (NaN otherwise, with a warning).
OPTIONAL_COLUMNS = ("success_rate", "return_mean", "q_policy", "mc_return", "q_data")
#: Problems logged one by one; the rest are summarised in one line (all go to missing.csv).
MAX_LOGGED_PROBLEMS = 30


@dataclass(frozen=True)
class PhaseProblem:
    """One expected phase that cannot be (fully) used; a row of missing.csv."""

    task: str
    method: str
    seed: int
    phase: str
    reason: str  # missing | incomplete | failed | invalid
    detail: str
    path: str
    used: bool  # True when its rows were still analysed (include_incomplete)


def expected_runs(config: dict[str, Any]) -> list[RunKey]:
    """Runs the config asks for: every task x method (variants included) x seed."""
    from calql.agents import config_methods

    methods = config_methods(config)
    return [
        RunKey(task, method, int(seed)) for task in config["tasks"] for method in methods for seed in config["seeds"]
    ]


def discover_runs(runs_dir: Path) -> list[RunKey]:
    """Every task x method x seed among the run folders under ``runs_dir``.

    Without a config the cross product of what exists is the best guess of what was intended,
    so a seed present for one method but not another is still reported missing.
    """
    found = RunKey.existing(runs_dir)
    tasks = sorted({k.task for k in found})
    methods = sorted({k.method for k in found})
    seeds = sorted({k.seed for k in found})
    return [RunKey(t, m, s) for t in tasks for m in methods for s in seeds]


def read_status(run_json: Path) -> tuple[str | None, str]:
    """(status, detail) from a phase's run.json; status None when absent or unreadable."""
    if not run_json.exists():
        return None, "no run.json (phase not finished)"
    try:
        status = json.loads(run_json.read_text()).get("status")
    except (OSError, ValueError, AttributeError) as exc:
        return None, f"unreadable run.json: {exc}"
    return (str(status) if status is not None else None), f"run.json status={status!r}"


def why_unfinished(phase_dir: Path, reason: str, detail: str) -> tuple[str, str]:
    """(reason, detail) of a phase that did not finish: the error its job recorded (Snakemake
    deletes a failed job's outputs, not RUN/<phase>/error.json), or whether it can resume."""
    failure = read_failure(phase_dir)
    if failure is not None:
        return "failed", failure
    if any((phase_dir / "checkpoints").glob("*.pt")):
        return "incomplete", f"{detail}; stopped mid-phase, rerun to resume from its checkpoint"
    return reason, detail


def read_metrics(path: Path, key: RunKey, phase: str) -> pd.DataFrame:
    """Read one metrics.csv, check its columns and identity, sort by time; ValueError if unusable."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}")
    if frame.empty:
        raise ValueError(f"{path} has no rows")
    for column, expected in (("task", key.task), ("method", key.method), ("phase", phase)):
        if column in frame.columns and not (frame[column].astype(str) == expected).all():
            found = sorted(frame[column].astype(str).unique())
            raise ValueError(f"{path}: column {column} holds {found}, the path says {expected!r}")
    if "seed" in frame.columns and not (pd.to_numeric(frame["seed"], errors="coerce") == key.seed).all():
        raise ValueError(f"{path}: column seed differs from the path's seed {key.seed}")
    absent = [c for c in OPTIONAL_COLUMNS if c not in frame.columns]
    if absent:
        log.warning("%s has no column(s) %s; they are left empty", path, absent)
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    frame["task"], frame["method"], frame["seed"], frame["phase"] = key.task, key.method, key.seed, phase
    for column in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    unusable = frame[list(REQUIRED_COLUMNS)].isna().any(axis=1)
    if unusable.any():
        log.warning("%s: dropping %d row(s) without grad_step/env_steps/score", path, int(unusable.sum()))
        frame = frame[~unusable]
    # A resumed run may log an evaluation twice; the later row is the one of the finished run.
    duplicated = frame.duplicated(subset=["grad_step", "env_steps"], keep="last")
    if duplicated.any():
        log.warning("%s: %d duplicated evaluation(s) (resume?); keeping the last of each", path, int(duplicated.sum()))
        frame = frame[~duplicated]
    if frame.empty:
        raise ValueError(f"{path} has no usable rows")
    return frame.sort_values(["env_steps", "grad_step"], kind="stable").reset_index(drop=True)


@dataclass
class LoadedRuns:
    """Metrics of every usable phase plus the problems found on the way."""

    keys: list[RunKey]
    phases: dict[tuple[RunKey, str], pd.DataFrame]
    problems: list[PhaseProblem]
    config: dict[str, Any] | None = None
    """The experiment config the runs come from (which methods pre-train), if known."""


def load_runs(
    runs_dir: Path, keys: Iterable[RunKey], include_incomplete: bool = False, config: dict[str, Any] | None = None
) -> LoadedRuns:
    """Load every expected phase of ``keys``; record (and log) each one that cannot be used.
    ``config`` tells which methods pre-train (its variants included); without it, the registry."""
    from tqdm.auto import tqdm

    keys = list(keys)
    phases: dict[tuple[RunKey, str], pd.DataFrame] = {}
    problems: list[PhaseProblem] = []
    for key in tqdm(keys, desc="loading runs", unit="run", disable=len(keys) < 50):
        expected = run_phases(key.method, config)
        for phase in expected:
            phase_dir = key.dir(runs_dir) / phase
            metrics_path = phase_dir / "metrics.csv"

            def problem(reason: str, detail: str, used: bool = False) -> None:
                # called only within this iteration, so the loop variables are the current ones
                problems.append(
                    PhaseProblem(key.task, key.method, key.seed, phase, reason, detail, str(phase_dir), used)  # noqa: B023
                )

            if not metrics_path.exists():
                first = expected[0]
                before = "" if phase == first or (key, first) in phases else f" (not started: {first} did not finish)"
                problem(*why_unfinished(phase_dir, "missing", "no metrics.csv" + before))
                continue
            status, detail = read_status(phase_dir / "run.json")
            complete = status == "complete"
            if not complete:
                reason = "incomplete" if status in (None, "running") else "failed"
                reason, detail = why_unfinished(phase_dir, reason, detail)
                if not include_incomplete or reason == "failed":
                    problem(reason, detail)
                    continue
            try:
                frame = read_metrics(metrics_path, key, phase)
            except ValueError as exc:
                problem("invalid", str(exc))
                continue
            if not complete:
                problem(reason, detail + "; rows used (include_incomplete)", used=True)
            phases[(key, phase)] = frame
    for p in problems[:MAX_LOGGED_PROBLEMS]:
        log.warning("%s %s/%s/seed%d/%s: %s", p.reason, p.task, p.method, p.seed, p.phase, p.detail)
    if len(problems) > MAX_LOGGED_PROBLEMS:
        log.warning(
            "... and %d more missing or unusable phase(s); all are listed in missing.csv",
            len(problems) - MAX_LOGGED_PROBLEMS,
        )
    return LoadedRuns(keys, phases, problems, config)


def problems_frame(problems: list[PhaseProblem]) -> pd.DataFrame:
    columns = ["task", "method", "seed", "phase", "reason", "detail", "path", "used"]
    return pd.DataFrame([p.__dict__ for p in problems], columns=columns)
