"""Issue 20.1: a run phase made with another config than the one analysed is ``stale``: listed in
missing.csv with both hashes and the changed keys, left out of every table and figure, and
counted in the partial-results note. Without a config the hashes cannot be checked."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

import analysis.plots
from analysis.aggregate import aggregate
from analysis.cli import main
from analysis.stale import changed_keys
from calql.config import validate_config
from calql.run_files import RunKey, phase_hash
from calql.training.resolve import resolve_run_config
from tests.synthetic_study import METHODS, SEEDS, TASKS, record_figure_texts, write_phase, write_study
from tests.synthetic_study import study_config as synthetic_config

#: Scores no synthetic run has: a row with them comes from the old config.
OLD_SCORE = 12.345


def study_config(tmp_path: Path, **train: dict) -> dict:
    return validate_config(synthetic_config(tmp_path, "stale", **train))


def write_old_run(runs: Path, config: dict, method: str, seed: int, phases: tuple[str, ...]) -> dict:
    """Overwrite ``phases`` of one run with phases made with ``config`` (scores OLD_SCORE)."""
    run = resolve_run_config(config, "taskA", method)
    for phase in phases:
        steps = [0, 0, 0] if phase == "pretrain" else [0, 100, 200]
        write_phase(runs, "taskA", method, seed, phase, steps, [OLD_SCORE] * 3, [0, 50, 100], run_config=run)
    return run


@pytest.fixture
def changed_pretrain(tmp_path: Path) -> tuple[Path, dict, dict]:
    """Every run made with the new config (train.pretrain.steps + 50) except iql seed 1, whose
    both phases are left from the old config (the job that would rerun it failed)."""
    old = study_config(tmp_path)
    steps = resolve_run_config(old, "taskA", "iql")["pretrain"]["steps"]
    new = study_config(tmp_path, pretrain={"steps": steps + 50})
    runs = tmp_path / "results" / "runs"
    write_study(runs, TASKS, METHODS, SEEDS, n_evals=4, config=new)
    write_old_run(runs, old, "iql", 1, ("pretrain", "finetune"))
    return runs, old, new


def test_stale_run_is_left_out_and_listed_with_both_hashes_and_the_changed_key(
    changed_pretrain: tuple[Path, dict, dict],
) -> None:
    runs, old, new = changed_pretrain
    summary = aggregate(runs, new)
    row = summary.scores.set_index(["task", "method", "seed"]).loc[("taskA", "iql", 1)]
    assert row["status"] == "missing" and row["stale_phases"] == 2
    assert row[["offline_score", "final_score", "offline_q_gap"]].isna().all()
    assert not (summary.curves["score"] == OLD_SCORE).any()
    assert not ((summary.curves["method"] == "iql") & (summary.curves["seed"] == 1)).any()
    others = summary.scores[(summary.scores["method"] != "iql") | (summary.scores["seed"] != 1)]
    assert (others["status"] == "complete").all() and (others["stale_phases"] == 0).all()

    stale = summary.missing[summary.missing["reason"] == "stale"].set_index("phase")
    assert list(summary.missing["reason"]) == ["stale", "stale"] and set(stale.index) == {"pretrain", "finetune"}
    old_run, new_run = resolve_run_config(old, "taskA", "iql"), resolve_run_config(new, "taskA", "iql")
    steps = old_run["pretrain"]["steps"]
    for phase in ("pretrain", "finetune"):
        detail = stale.loc[phase, "detail"]
        assert phase_hash(old_run, phase) in detail and phase_hash(new_run, phase) in detail, detail
        assert f"pretrain.steps: {steps} -> {steps + 50}" in detail, detail
        assert stale.loc[phase, "used"] == False  # noqa: E712 - a numpy bool


def test_finetune_budget_change_keeps_the_current_pretrain(tmp_path: Path) -> None:
    """Only the fine-tuning budget changed: pre-training is still current (its hash excludes the
    fine-tuning budget), the old fine-tuning is stale; the run is partial with its offline score."""
    old = study_config(tmp_path)
    env_steps = resolve_run_config(old, "taskA", "calql")["finetune"]["env_steps"]
    new = study_config(tmp_path, finetune={"env_steps": env_steps * 2})
    runs = tmp_path / "results" / "runs"
    write_study(runs, TASKS, METHODS, SEEDS, n_evals=4, config=new)
    write_old_run(runs, old, "calql", 0, ("finetune",))
    summary = aggregate(runs, new)
    row = summary.scores.set_index(["task", "method", "seed"]).loc[("taskA", "calql", 0)]
    assert row["status"] == "partial" and row["stale_phases"] == 1
    assert pd.notna(row["offline_score"]) and pd.isna(row["final_score"])
    (problem,) = summary.missing.itertuples()
    assert (problem.method, problem.seed, problem.phase, problem.reason) == ("calql", 0, "finetune", "stale")
    assert f"finetune.env_steps: {env_steps} -> {env_steps * 2}" in problem.detail
    assert "pretrain." not in problem.detail  # pre-training did not change


def test_tables_and_figures_say_how_many_runs_were_stale(
    changed_pretrain: tuple[Path, dict, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs, _, new = changed_pretrain
    root = runs.parent.parent
    (root / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(new))))
    drawn = record_figure_texts(monkeypatch)
    assert main(["-q", "all", "--config", str(root / "config.yaml")]) == 0
    summary = root / "results" / "summary"
    scores = pd.read_csv(summary / "scores.csv")
    assert not (pd.read_csv(summary / "curves.csv")["score"] == OLD_SCORE).any()
    assert scores["stale_phases"].tolist().count(2) == 1
    note = "Partial results: 5 of 6 runs complete"
    stale = "1 run(s) with phases made with another config (stale, left out)"
    for table in (summary / "tables").glob("*.md"):
        text = table.read_text()
        assert note in text and stale in text, table
    assert set(drawn) == set(analysis.plots.FIGURES)
    for name, texts in drawn.items():
        assert any(note in t and stale in t for t in texts), (name, texts)


def test_without_a_config_hashes_are_not_checked(changed_pretrain: tuple[Path, dict, dict]) -> None:
    """Discovering runs (no --config) there is no current config to compare with: documented."""
    runs, _, _ = changed_pretrain
    summary = aggregate(runs)
    assert summary.missing.empty and (summary.scores["status"] == "complete").all()
    assert (summary.curves["score"] == OLD_SCORE).any()


def test_record_without_hash_or_config_is_stale(tmp_path: Path) -> None:
    """A run.json that records no config hash cannot be shown to come from this config."""
    config = study_config(tmp_path)
    runs = tmp_path / "results" / "runs"
    write_study(runs, TASKS, METHODS, SEEDS, n_evals=4, config=config)
    run_json = RunKey("taskA", "sac", 0).dir(runs) / "finetune" / "run.json"
    run_json.write_text(json.dumps({"status": "complete", "seed": 0}))
    summary = aggregate(runs, config)
    (problem,) = summary.missing.itertuples()
    assert (problem.method, problem.reason) == ("sac", "stale")
    expected = phase_hash(resolve_run_config(config, "taskA", "sac"), "finetune")
    assert "config_hash None" in problem.detail and expected in problem.detail
    assert "run.json records no config" in problem.detail


def test_changed_keys_names_nested_paths_and_pretrain_keys_of_finetune() -> None:
    base = {"task": "t", "method": "m", "pretrain": {"steps": 100}, "finetune": {"env_steps": 10}, "agent": {"a": 1}}
    new = copy.deepcopy(base)
    new["pretrain"]["steps"], new["agent"]["a"], new["agent"]["b"] = 150, 2, 3
    assert changed_keys(base, new, "pretrain") == [
        "agent.a: 1 -> 2",
        "agent.b: '<absent>' -> 3",
        "pretrain.steps: 100 -> 150",
    ]
    assert "pretrain.steps: 100 -> 150" in changed_keys(base, new, "finetune")
    assert not any(k.startswith("pretrain_hash") for k in changed_keys(base, new, "finetune"))
    new_ft = copy.deepcopy(base)
    new_ft["finetune"]["env_steps"] = 20
    assert changed_keys(base, new_ft, "pretrain") == []
    assert changed_keys(base, new_ft, "finetune") == ["finetune.env_steps: 10 -> 20"]
