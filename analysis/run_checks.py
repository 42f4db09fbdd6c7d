"""Check finished runs against their domain's conventions, not just their exit codes.

A run that exits 0 can still be wrong in ways that only its numbers show: an episode longer than
the task's cap (a time limit that never applied), an AntMaze or Adroit episode that went on after
its success (success termination not applied; the official code ends the episode there), a
Kitchen episode that stopped early (it must run to the cap), a score outside [0, 100] (wrong
reference returns), a fine-tuning run that never made a gradient step, or a task whose data
conventions table was not written. Each evaluation row records how its episodes ended
(``eval/*`` columns of ``metrics.csv``); this module reads them back for every expected run.

``python -m analysis check-runs --config C`` writes ``<summary>/run_checks.csv`` (one row per run
phase) and exits 1 when any check fails, naming each failure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from analysis.runs import expected_runs
from calql.config import get_task
from calql.envs.make import ends_at_success
from calql.errors import describe
from calql.run_files import METRICS_CSV, RUN_JSON, read_metrics, runs_dir_of
from calql.training.resolve import run_phases

#: Tolerance for comparing rates written as floats.
EPS = 1e-9


@dataclass(frozen=True)
class PhaseCheck:
    """One run phase's facts as its files record them (a row of run_checks.csv)."""

    task: str
    method: str
    seed: int
    phase: str
    status: str
    eval_rows: int
    grad_steps: int
    env_steps: int
    score_min: float
    score_max: float
    episode_length_max: int
    episode_cap: int | None
    terminated_rate_max: float
    continued_after_success_max: float
    problems: str


def _phase_problems(rows: list[dict[str, Any]], task: Any, run: dict[str, Any], phase: str) -> list[str]:
    """What is wrong in one finished phase's metrics rows."""
    problems = []
    if len(rows) < 2:
        problems.append(f"{len(rows)} evaluation row(s); a phase evaluates at its start and its end")
    scores = [r["score"] for r in rows]
    if any(s is None or not 0.0 <= s <= 100.0 for s in scores):
        problems.append(f"scores outside [0, 100]: {scores}")
    cap = task.max_episode_steps
    lengths = [r.get("eval/episode_length_max") for r in rows]
    if any(v is None for v in lengths):
        problems.append("metrics.csv has no eval/episode_length_max (made by an older calql?)")
        return problems
    if cap is not None and max(lengths) > cap:
        problems.append(f"an evaluation episode of {max(lengths)} steps, above the cap {cap}")
    if ends_at_success(task):
        continued = max(float(r["eval/continued_after_success_rate"]) for r in rows)
        if continued > EPS:
            problems.append(f"{continued:.0%} of evaluation episodes went on after their success")
    else:
        if max(float(r["eval/terminated_rate"]) for r in rows) > EPS:
            problems.append("an evaluation episode terminated, but this domain runs every episode to its cap")
        if cap is not None and min(float(r["eval/episode_length_mean"]) for r in rows) < cap - EPS:
            problems.append(f"evaluation episodes shorter than the cap {cap}")
    last = rows[-1]
    if phase == "pretrain" and last["grad_step"] != run["pretrain"]["steps"]:
        problems.append(f"pre-training ended at {last['grad_step']} gradient steps, not {run['pretrain']['steps']}")
    if phase == "finetune":
        if last["env_steps"] < run["finetune"]["env_steps"]:
            problems.append(f"fine-tuning ended at {last['env_steps']} env steps of {run['finetune']['env_steps']}")
        if last["grad_step"] <= 0:
            problems.append("fine-tuning made no gradient step")
    return problems


def check_phase(results_dir: Path, config: dict[str, Any], key: Any, phase: str) -> PhaseCheck:
    """The check row of one expected run phase (missing or unfinished phases are problems too)."""
    task = get_task(config, key.task)
    folder = key.dir(runs_dir_of(results_dir)) / phase
    base = dict(task=key.task, method=key.method, seed=key.seed, phase=phase, episode_cap=task.max_episode_steps)
    empty = dict(
        eval_rows=0,
        grad_steps=0,
        env_steps=0,
        score_min=float("nan"),
        score_max=float("nan"),
        episode_length_max=0,
        terminated_rate_max=float("nan"),
        continued_after_success_max=float("nan"),
    )
    try:
        record = json.loads((folder / RUN_JSON).read_text())
        rows = read_metrics(folder / METRICS_CSV)
    except (OSError, ValueError) as exc:
        return PhaseCheck(**base, status="missing", **empty, problems=f"cannot read the run files: {describe(exc)}")
    status = str(record.get("status"))
    if status != "complete" or not rows:
        return PhaseCheck(**base, status=status, **empty, problems=f"run.json status {status!r}, {len(rows)} rows")
    problems = _phase_problems(rows, task, record["config"], phase)
    return PhaseCheck(
        **base,
        status=status,
        eval_rows=len(rows),
        grad_steps=int(rows[-1]["grad_step"]),
        env_steps=int(rows[-1]["env_steps"]),
        score_min=min(r["score"] for r in rows),
        score_max=max(r["score"] for r in rows),
        episode_length_max=int(max(r.get("eval/episode_length_max") or 0 for r in rows)),
        terminated_rate_max=max(float(r.get("eval/terminated_rate") or 0.0) for r in rows),
        continued_after_success_max=max(float(r.get("eval/continued_after_success_rate") or 0.0) for r in rows),
        problems="; ".join(problems),
    )


def check_runs(results_dir: Path, config: dict[str, Any]) -> list[PhaseCheck]:
    """One row per expected run phase of ``config``."""
    return [
        check_phase(results_dir, config, key, phase)
        for key in expected_runs(config)
        for phase in run_phases(key.method, config)
    ]


def check_results(results_dir: Path, config: dict[str, Any]) -> list[str]:
    """Every failed check under ``results_dir`` as ``task/method/seedS/phase: problem``; also a
    missing data-conventions table per task."""
    out = [
        f"{c.task}/{c.method}/seed{c.seed}/{c.phase}: {c.problems}"
        for c in check_runs(results_dir, config)
        if c.problems
    ]
    for task in config["tasks"]:
        table = results_dir / "summary" / "conventions" / f"{task}.md"
        if not table.is_file():
            out.append(f"{task}: no data-conventions table {table}")
    return out


def check_rows(checks: list[PhaseCheck]) -> list[dict[str, Any]]:
    """The checks as plain rows (for run_checks.csv)."""
    return [asdict(c) for c in checks]
