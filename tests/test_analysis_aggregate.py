"""Aggregation of run files: expected runs, missing/failed runs reported, config section checked."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis.aggregate import aggregate, write_summary
from analysis.config import AnalysisConfig
from calql.config import load_config, validate_config
from calql.errors import CalqlError, ConfigError
from calql.training.resolve import resolve_run_config
from tests.conftest import REPO
from tests.synthetic_study import write_phase, write_study

TASKS = ("taskA", "taskB")
METHODS = ("calql", "cql", "sac")
SEEDS = (0, 1)


def make_config(tmp_path: Path, analysis: dict | None = None) -> dict:
    task = {"domain": "pointmaze", "env": {"id": "PointMaze_UMaze-v3"}, "source": {"kind": "generated"}}
    config = {
        "experiment": "test",
        "results_dir": str(tmp_path / "results"),
        "seeds": list(SEEDS),
        "methods": list(METHODS),
        "tasks": {t: dict(task) for t in TASKS},
    }
    if analysis is not None:
        config["analysis"] = analysis
    return validate_config(config)


@pytest.fixture()
def study(tmp_path: Path) -> Path:
    runs = tmp_path / "results" / "runs"
    write_study(runs, TASKS, METHODS, SEEDS, n_evals=5, config=make_config(tmp_path))
    return runs


def test_complete_study_tables(study: Path, tmp_path: Path) -> None:
    summary = aggregate(study, make_config(tmp_path))
    scores = summary.scores
    assert len(scores) == len(TASKS) * len(METHODS) * len(SEEDS)
    assert (scores["status"] == "complete").all()
    assert summary.missing.empty
    assert scores.loc[scores.method == "sac", "offline_score"].isna().all()
    assert scores.loc[scores.method != "sac", "offline_score"].notna().all()
    assert (scores["unlearning_dip"] >= 0).all()
    curves = summary.curves
    assert {
        "task",
        "method",
        "seed",
        "phase",
        "step",
        "env_steps",
        "score",
        "success",
        "q_policy",
        "mc_return",
        "q_data",
    } <= set(curves.columns)
    assert set(curves.loc[curves.method == "sac", "phase"]) == {"finetune"}
    # per run: pretrain rows come before finetune rows, finetune sorted by env_steps
    one = curves[(curves.task == "taskA") & (curves.method == "calql") & (curves.seed == 0)]
    assert list(one["phase"]) == ["pretrain"] * 5 + ["finetune"] * 5
    assert one.loc[one.phase == "finetune", "env_steps"].is_monotonic_increasing
    paths = write_summary(summary, tmp_path / "summary")
    assert pd.read_csv(paths["scores"]).shape == scores.shape


def test_missing_incomplete_failed_and_invalid_runs_are_reported(
    study: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.rmtree(study / "taskA" / "cql" / "seed1" / "finetune")  # missing phase
    (study / "taskB" / "calql" / "seed0" / "finetune" / "run.json").unlink()  # still running
    (study / "taskB" / "cql" / "seed0" / "pretrain" / "run.json").write_text(json.dumps({"status": "failed"}))
    bad = study / "taskA" / "sac" / "seed0" / "finetune" / "metrics.csv"
    bad.write_text(bad.read_text().replace("taskA", "taskZ"))  # identity differs from the path
    shutil.rmtree(study / "taskB" / "sac" / "seed1")  # whole run absent
    with caplog.at_level(logging.WARNING):
        summary = aggregate(study, make_config(tmp_path))
    missing = summary.missing.set_index(["task", "method", "seed", "phase"])["reason"].to_dict()
    assert missing == {
        ("taskA", "cql", 1, "finetune"): "missing",
        ("taskB", "calql", 0, "finetune"): "incomplete",
        ("taskB", "cql", 0, "pretrain"): "failed",
        ("taskA", "sac", 0, "finetune"): "invalid",
        ("taskB", "sac", 1, "finetune"): "missing",
    }
    assert "taskB/sac/seed1/finetune" in caplog.text and "missing" in caplog.text
    status = summary.scores.set_index(["task", "method", "seed"])["status"]
    assert status[("taskA", "cql", 1)] == "partial" and status[("taskB", "sac", 1)] == "missing"
    row = summary.scores.set_index(["task", "method", "seed"]).loc[("taskA", "cql", 1)]
    assert not math.isnan(row["offline_score"]) and math.isnan(row["final_score"])
    # every expected run still has its row: nothing silently dropped
    assert len(summary.scores) == len(TASKS) * len(METHODS) * len(SEEDS)
    assert not (
        (summary.curves.task == "taskB")
        & (summary.curves.method == "calql")
        & (summary.curves.seed == 0)
        & (summary.curves.phase == "finetune")
    ).any()


def test_include_incomplete_uses_rows_but_still_lists_them(study: Path, tmp_path: Path) -> None:
    (study / "taskB" / "calql" / "seed0" / "finetune" / "run.json").unlink()
    summary = aggregate(study, make_config(tmp_path, {"include_incomplete": True}))
    assert summary.missing["used"].tolist() == [True]
    row = summary.scores.set_index(["task", "method", "seed"]).loc[("taskB", "calql", 0)]
    assert row["status"] == "partial" and not math.isnan(row["final_score"])


def test_config_expects_runs_that_were_never_started(tmp_path: Path) -> None:
    runs = tmp_path / "results" / "runs"
    write_study(runs, ("taskA",), ("calql",), (0,), n_evals=3, config=make_config(tmp_path))
    summary = aggregate(runs, make_config(tmp_path))
    # 2 tasks x 3 methods x 2 seeds expected, 1 run present; sac lacks only its finetune phase
    assert (summary.scores["status"] == "missing").sum() == 11
    sac = summary.missing[summary.missing.method == "sac"]
    assert set(sac["phase"]) == {"finetune"}
    assert len(summary.missing) == 2 * 2 * 2 + 2 * 2 * 2 + 2 * 2 - 2  # calql, cql (2 phases), sac (1); minus present


def test_runs_dir_alone_expects_cross_product(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_study(runs, ("taskA",), ("calql", "iql"), (0, 1), n_evals=3)
    shutil.rmtree(runs / "taskA" / "iql" / "seed1")
    summary = aggregate(runs)
    assert len(summary.scores) == 4
    assert summary.missing[["method", "seed"]].drop_duplicates().values.tolist() == [["iql", 1]]


def test_no_runs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CalqlError, match="no runs found"):
        aggregate(tmp_path / "nothing")


def test_early_fraction_from_config_changes_dip(tmp_path: Path) -> None:
    runs = tmp_path / "results" / "runs"
    config = make_config(tmp_path)
    config.update(methods=["sac"], seeds=[0], tasks={"taskA": config["tasks"]["taskA"]})
    run = resolve_run_config(config, "taskA", "sac")
    write_phase(runs, "taskA", "sac", 0, "finetune", [0, 100, 200, 300, 400], [50, 40, 10, 80, 90], run_config=run)
    assert aggregate(runs, config).scores["unlearning_dip"].iloc[0] == pytest.approx(10.0)
    config["analysis"] = {"early_fraction": 0.5}
    assert aggregate(runs, config).scores["unlearning_dip"].iloc[0] == pytest.approx(40.0)


def test_analysis_section_defaults_and_validation(tmp_path: Path) -> None:
    # the defaults are the schema's, which is the only place that defines them
    schema = yaml.safe_load((REPO / "calql" / "schemas" / "config.schema.yaml").read_text())
    defaults = {k: v["default"] for k, v in schema["properties"]["analysis"]["properties"].items()}
    settings = dataclasses.asdict(AnalysisConfig.from_config(None))
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()} == defaults
    settings = AnalysisConfig.from_section({"n_bootstrap": 500, "formats": ["png"], "colors": {"calql": "red"}})
    assert settings.n_bootstrap == 500 and settings.formats == ("png",) and settings.colors == {"calql": "red"}
    with pytest.raises(ConfigError, match="n_boostrap"):
        AnalysisConfig.from_section({"n_boostrap": 10})
    for bad in (
        {"early_fraction": 0},
        {"early_fraction": 1.5},
        {"ci": 1.0},
        {"n_bootstrap": 0},
        {"seed": -1},
        {"formats": ["gif"]},
        {"include_incomplete": "yes"},
        {"dpi": True},
        {"colors": {"calql": "not-a-colour"}},
    ):
        with pytest.raises(ConfigError, match=f"analysis/{next(iter(bad))}"):
            AnalysisConfig.from_section(bad)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(make_config(tmp_path, {"ci": 0.9, "seed": 4})))
    assert AnalysisConfig.from_config(load_config(path)) == dataclasses.replace(
        AnalysisConfig.from_config(None), ci=0.9, seed=4
    )


def test_duplicated_and_nan_rows_are_cleaned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runs = tmp_path / "runs"
    folder = write_phase(runs, "taskA", "sac", 0, "finetune", [0, 100, 100, 200, 300], [10, 20, 30, 40, 50])
    metrics = folder / "metrics.csv"
    frame = pd.read_csv(metrics)
    frame.loc[4, "score"] = float("nan")
    frame.to_csv(metrics, index=False)
    with caplog.at_level(logging.WARNING):
        summary = aggregate(runs)
    assert list(summary.curves["env_steps"]) == [0, 100, 200]
    assert list(summary.curves["score"]) == [10, 30, 40]  # the later of the two rows at 100
    assert "duplicated" in caplog.text and "dropping 1 row" in caplog.text
