"""Find, check and load run files (docs/design.md, "Run files").

Layout (:class:`calql.run_files.RunKey`): ``<runs_dir>/<task>/<method>/seed<seed>/{pretrain,finetune}/``,
each with ``metrics.csv`` and ``run.json``.
A phase counts as complete only when its ``run.json`` says ``"status": "complete"`` (training
writes it last, atomically) and, when the analysis is given the experiment config, its recorded
``config_hash`` is the one that config resolves to for the phase (:mod:`analysis.stale`): a phase
left from before a config change is ``stale``, not current. Without a config (runs discovered
under a folder) there is nothing to compare against, so any complete phase is used. Every expected
phase that is absent, unfinished, failed, stale or unreadable becomes a :class:`PhaseProblem`, so
nothing is dropped without a trace.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.stale import CurrentRuns, current_runs, stale_detail
from calql.errors import describe
from calql.run_files import METRICS_CSV, RUN_JSON, RunKey, read_metrics
from calql.training.guard import read_failure
from calql.training.resolve import run_phases

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
    reason: str  # missing | incomplete | failed | stale | invalid
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


def read_record(run_json: Path) -> tuple[dict[str, Any], str]:
    """(record, detail) of a phase's run.json; the record is empty when absent or unreadable."""
    if not run_json.exists():
        return {}, "no run.json (phase not finished)"
    try:
        record = json.loads(run_json.read_text())
        status = record.get("status")
    except (OSError, ValueError, AttributeError) as exc:
        return {}, f"unreadable run.json: {describe(exc)}"
    return record, f"run.json status={status!r}"


def why_unfinished(phase_dir: Path, reason: str, detail: str) -> tuple[str, str]:
    """(reason, detail) of a phase that did not finish: the error its job recorded (Snakemake
    deletes a failed job's outputs, not RUN/<phase>/error.json), or whether it can resume."""
    failure = read_failure(phase_dir)
    if failure is not None:
        return "failed", failure
    if any((phase_dir / "checkpoints").glob("*.pt")):
        return "incomplete", f"{detail}; stopped mid-phase, rerun to resume from its checkpoint"
    return reason, detail


def read_phase_metrics(path: Path, key: RunKey, phase: str) -> pd.DataFrame:
    """One metrics.csv (read by the contract's reader, which keeps the last of repeated
    evaluation rows), its columns and identity checked, sorted by time; ValueError if unusable."""
    try:
        rows = read_metrics(path)
    except (OSError, ValueError, csv.Error) as exc:
        raise ValueError(f"cannot read {path}: {describe(exc)}") from exc
    if not rows:
        raise ValueError(f"{path} has no rows")
    frame = pd.DataFrame.from_records(rows)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}")
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

    ``config`` tells which methods pre-train (its variants included; without it, the registry)
    and what each phase's config hash must be: a complete phase made with another config is
    ``stale`` and left out. Without ``config`` the hashes cannot be checked (see the module doc).
    """
    from tqdm.auto import tqdm

    keys = list(keys)
    current = current_runs(config) if config is not None else None
    phases: dict[tuple[RunKey, str], pd.DataFrame] = {}
    problems: list[PhaseProblem] = []
    for key in tqdm(keys, desc="loading runs", unit="run", disable=len(keys) < 50):
        expected = run_phases(key.method, config)
        for phase in expected:
            phase_dir = key.dir(runs_dir) / phase
            after = "" if phase == expected[0] or (key, expected[0]) in phases else expected[0]
            frame, problem = load_phase(phase_dir, key, phase, after, include_incomplete, current)
            if problem is not None:
                problems.append(problem)
            if frame is not None:
                phases[(key, phase)] = frame
    log_problems(problems)
    return LoadedRuns(keys, phases, problems, config)


def load_phase(
    phase_dir: Path,
    key: RunKey,
    phase: str,
    after: str,
    include_incomplete: bool,
    current: CurrentRuns | None,
) -> tuple[pd.DataFrame | None, PhaseProblem | None]:
    """One phase's metrics (None when unusable) and its problem (None when complete and current).

    ``after``: the phase before this one when it did not finish (named in a missing phase's
    detail); ``current``: the resolved runs of the analysed config, or None (no hash check).
    """

    def problem(reason: str, detail: str, used: bool = False) -> PhaseProblem:
        return PhaseProblem(key.task, key.method, key.seed, phase, reason, detail, str(phase_dir), used)

    if not (phase_dir / METRICS_CSV).exists():
        before = f" (not started: {after} did not finish)" if after else ""
        return None, problem(*why_unfinished(phase_dir, "missing", "no metrics.csv" + before))
    record, detail = read_record(phase_dir / RUN_JSON)
    complete = record.get("status") == "complete"
    if not complete:
        reason = "incomplete" if record.get("status") in (None, "running") else "failed"
        reason, detail = why_unfinished(phase_dir, reason, detail)
        if not include_incomplete or reason == "failed":
            return None, problem(reason, detail)
    elif current is not None:
        run = current.get((key.task, key.method))
        stale = "the config has no such run" if run is None else stale_detail(record, run, phase)
        if stale is not None:
            return None, problem("stale", stale)
    try:
        frame = read_phase_metrics(phase_dir / METRICS_CSV, key, phase)
    except ValueError as exc:
        return None, problem("invalid", str(exc))
    if not complete:
        return frame, problem(reason, detail + "; rows used (include_incomplete)", used=True)
    return frame, None


def log_problems(problems: list[PhaseProblem]) -> None:
    """Log the first problems one by one and the rest in one line (missing.csv holds them all)."""
    for p in problems[:MAX_LOGGED_PROBLEMS]:
        log.warning("%s %s/%s/seed%d/%s: %s", p.reason, p.task, p.method, p.seed, p.phase, p.detail)
    if len(problems) > MAX_LOGGED_PROBLEMS:
        log.warning(
            "... and %d more missing or unusable phase(s); all are listed in missing.csv",
            len(problems) - MAX_LOGGED_PROBLEMS,
        )
    n_stale = sum(p.reason == "stale" for p in problems)
    if n_stale:
        log.warning(
            "%d run phase(s) were made with another config than the current one and are left out "
            "of every table and figure (reason 'stale' in missing.csv); rerun the workflow to replace them",
            n_stale,
        )


def problems_frame(problems: list[PhaseProblem]) -> pd.DataFrame:
    columns = ["task", "method", "seed", "phase", "reason", "detail", "path", "used"]
    return pd.DataFrame([p.__dict__ for p in problems], columns=columns)
