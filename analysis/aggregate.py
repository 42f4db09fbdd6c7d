"""Turn run files into tidy tables: summary/curves.csv, summary/scores.csv, summary/missing.csv."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.config import AnalysisConfig
from analysis.io import write_csv
from analysis.metrics import run_scores
from analysis.runs import (
    LoadedRuns,
    discover_runs,
    expected_runs,
    load_runs,
    problems_frame,
)
from calql.errors import CalqlError
from calql.run_files import RunKey
from calql.training.resolve import run_phases

log = logging.getLogger(__name__)

CURVE_COLUMNS = [
    "task",
    "method",
    "seed",
    "phase",
    "step",
    "env_steps",
    "score",
    "success",
    "return_mean",
    "q_policy",
    "mc_return",
    "q_data",
]
SCORE_COLUMNS = [
    "task",
    "method",
    "seed",
    "status",
    "offline_score",
    "offline_q_gap",
    "start_score",
    "final_score",
    "improvement",
    "cumulative_regret",
    "unlearning_dip",
    "n_online_evals",
    "online_env_steps",
    "stale_phases",
]


@dataclass
class Summary:
    curves: pd.DataFrame
    scores: pd.DataFrame
    missing: pd.DataFrame


def curves_table(loaded: LoadedRuns) -> pd.DataFrame:
    """One row per evaluation of every usable phase (``step`` = gradient step, ``success`` = rate)."""
    frames = [
        frame.rename(columns={"grad_step": "step", "success_rate": "success"})[CURVE_COLUMNS]
        for frame in loaded.phases.values()
    ]
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    curves = pd.concat(frames, ignore_index=True)
    order = {"pretrain": 0, "finetune": 1}
    return (
        curves.assign(_phase=curves["phase"].map(order))
        .sort_values(["task", "method", "seed", "_phase", "env_steps", "step"], kind="stable")
        .drop(columns="_phase")
        .reset_index(drop=True)
    )


def scores_table(loaded: LoadedRuns, early_fraction: float) -> pd.DataFrame:
    """One row per expected run; ``status`` is complete / partial / missing, numbers NaN where absent.

    ``stale_phases`` counts the run's phases left out because an older config made them, so that
    tables and figures can say how many runs were stale (:func:`analysis.partial.partial_note`).
    """
    stale = Counter((p.task, p.method, p.seed) for p in loaded.problems if p.reason == "stale")
    rows = []
    for key in loaded.keys:
        needed = run_phases(key.method, loaded.config)
        have = {p: loaded.phases.get((key, p)) for p in needed}
        n_have = sum(frame is not None for frame in have.values())
        status = "complete" if n_have == len(needed) else ("partial" if n_have else "missing")
        if any(p.used for p in loaded.problems if (p.task, p.method, p.seed) == (key.task, key.method, key.seed)):
            status = "partial"  # rows of an unfinished phase were used
        numbers = run_scores(have.get("pretrain"), have.get("finetune"), early_fraction)
        ident = {"task": key.task, "method": key.method, "seed": key.seed}
        rows.append({**ident, "status": status, **numbers, "stale_phases": stale[(key.task, key.method, key.seed)]})
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def aggregate(runs_dir: Path, config: dict[str, Any] | None = None, settings: AnalysisConfig | None = None) -> Summary:
    """Load the runs the config expects (or every run found) and build the three tables.

    With ``config`` a phase counts only if the config resolves to the hash its run.json records
    (others are ``stale`` in missing.csv); without it the runs are discovered and their hashes
    cannot be checked, so every complete phase is used, as before issue 20.
    """
    settings = settings or AnalysisConfig.from_config(config)
    runs_dir = Path(runs_dir)
    keys: list[RunKey] = expected_runs(config) if config is not None else discover_runs(runs_dir)
    if not keys:
        raise CalqlError(f"no runs found under {runs_dir} (expected {RunKey.PATTERN}/ folders)")
    if config is not None:
        extra = set(RunKey.existing(runs_dir)) - set(keys)
        if extra:
            log.info("ignoring %d run folder(s) not in the config, e.g. %s", len(extra), sorted(extra, key=str)[0])
    loaded = load_runs(runs_dir, keys, include_incomplete=settings.include_incomplete, config=config)
    summary = Summary(
        curves=curves_table(loaded),
        scores=scores_table(loaded, settings.early_fraction),
        missing=problems_frame(loaded.problems),
    )
    n_complete = int((summary.scores["status"] == "complete").sum())
    log.info(
        "%d of %d expected runs complete, %d phase(s) missing, stale or unusable (see missing.csv)",
        n_complete,
        len(keys),
        len(summary.missing),
    )
    if config is None:
        log.info("no --config: run.json config hashes not checked (a run from an older config counts as current)")
    if not loaded.phases:
        raise CalqlError(f"none of the {len(keys)} expected runs under {runs_dir} has a usable phase")
    return summary


def write_summary(summary: Summary, out_dir: Path) -> dict[str, Path]:
    """Write the tables atomically; return their paths."""
    paths = {name: Path(out_dir) / f"{name}.csv" for name in ("curves", "scores", "missing")}
    write_csv(summary.curves, paths["curves"])
    write_csv(summary.scores, paths["scores"])
    write_csv(summary.missing, paths["missing"])
    return paths
