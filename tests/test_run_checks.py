"""`python -m analysis check-runs`: each domain convention a finished run must keep is checked,
and each check fails on a run that breaks it (the smoke's barely trained policies never succeed,
so its own runs cannot show that the success checks bite)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analysis.cli import main
from analysis.run_checks import check_results
from calql.config import read_config_file, validate_config
from calql.run_files import RunKey, runs_dir_of
from calql.run_files.metrics_csv import write_metrics

REPO = Path(__file__).resolve().parent.parent
TASKS = ("antmaze-large-diverse", "kitchen-partial")
CAP = 100


def config(results: Path) -> dict[str, Any]:
    """The smoke config cut to one AntMaze and one Kitchen task, method calql, one seed."""
    raw = read_config_file(REPO / "config" / "paper-smoke.yaml")
    raw["tasks"] = {name: raw["tasks"][name] for name in TASKS}
    raw["train"]["per_task"] = {}
    raw["methods"], raw["seeds"], raw["results_dir"] = ["calql"], [0], str(results)
    return validate_config(raw)


def row(grad_step: int, env_steps: int, **evals: float) -> dict[str, Any]:
    base = {
        "score": 0.0,
        "eval/episode_length_max": CAP,
        "eval/episode_length_mean": float(CAP),
        "eval/terminated_rate": 0.0,
        "eval/continued_after_success_rate": 0.0,
    }
    return {"grad_step": grad_step, "env_steps": env_steps, **base, **evals}


def write_run(results: Path, task: str, phase: str, rows: list[dict[str, Any]], run: dict[str, Any]) -> None:
    folder = RunKey(task, "calql", 0).dir(runs_dir_of(results)) / phase
    folder.mkdir(parents=True, exist_ok=True)
    keyed = [{"task": task, "method": "calql", "seed": 0, "phase": phase, **r} for r in rows]
    write_metrics(folder / "metrics.csv", keyed)
    (folder / "run.json").write_text(json.dumps({"status": "complete", "config": run}))


def good_study(results: Path, edits: dict[tuple[str, str], list[dict[str, Any]]] | None = None) -> None:
    """Every phase as a correct smoke run would leave it, except the rows in ``edits``."""
    run = {"pretrain": {"steps": 20}, "finetune": {"env_steps": 100}}
    for task in TASKS:
        rows = {
            "pretrain": [row(0, 0), row(20, 0)],
            "finetune": [row(0, 0), row(100, 100)],
        }
        for phase, phase_rows in rows.items():
            write_run(results, task, phase, (edits or {}).get((task, phase), phase_rows), run)
        table = results / "summary" / "conventions" / f"{task}.md"
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text("| |\n")


def test_a_correct_study_passes_and_the_cli_writes_one_row_per_phase(tmp_path: Path) -> None:
    results = tmp_path / "results"
    good_study(results)
    assert check_results(results, config(results)) == []
    path = tmp_path / "smoke.yaml"
    path.write_text(json.dumps(config(results)))  # JSON is YAML
    assert main(["check-runs", "--config", str(path)]) == 0
    lines = (results / "summary" / "run_checks.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * len(TASKS)


@pytest.mark.parametrize(
    ("task", "phase", "rows", "message"),
    [
        (
            "antmaze-large-diverse",
            "finetune",
            [row(0, 0), row(100, 100, **{"eval/episode_length_max": 101})],
            "above the cap",
        ),
        (
            "antmaze-large-diverse",
            "finetune",
            [row(0, 0), row(100, 100, **{"eval/continued_after_success_rate": 0.5})],
            "went on after their success",
        ),
        ("kitchen-partial", "finetune", [row(0, 0), row(100, 100, **{"eval/terminated_rate": 0.5})], "terminated"),
        (
            "kitchen-partial",
            "pretrain",
            [row(0, 0), row(20, 0, **{"eval/episode_length_mean": 60.0})],
            "shorter than the cap",
        ),
        ("kitchen-partial", "pretrain", [row(0, 0), row(20, 0, score=130.0)], "outside [0, 100]"),
        ("kitchen-partial", "pretrain", [row(0, 0), row(15, 0)], "not 20"),
        ("antmaze-large-diverse", "finetune", [row(0, 0), row(0, 100)], "no gradient step"),
        ("antmaze-large-diverse", "finetune", [row(0, 0), row(50, 50)], "of 100"),
        ("antmaze-large-diverse", "pretrain", [row(20, 0)], "1 evaluation row"),
    ],
)
def test_each_broken_convention_is_named(
    tmp_path: Path, task: str, phase: str, rows: list[dict[str, Any]], message: str
) -> None:
    results = tmp_path / "results"
    good_study(results, {(task, phase): rows})
    problems = check_results(results, config(results))
    assert len(problems) == 1 and problems[0].startswith(f"{task}/calql/seed0/{phase}: "), problems
    assert message in problems[0], problems


def test_a_missing_phase_or_conventions_table_is_a_failure(tmp_path: Path) -> None:
    results = tmp_path / "results"
    good_study(results)
    (RunKey("kitchen-partial", "calql", 0).dir(runs_dir_of(results)) / "finetune" / "run.json").unlink()
    (results / "summary" / "conventions" / "antmaze-large-diverse.md").unlink()
    problems = check_results(results, config(results))
    assert any(p.startswith("kitchen-partial/calql/seed0/finetune: cannot read") for p in problems), problems
    assert any("no data-conventions table" in p for p in problems), problems
