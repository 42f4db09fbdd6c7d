"""The paper benchmark's smoke twin (config/paper-smoke.yaml).

Fast: the smoke resolves to the paper's run configs in every setting but budgets, evaluation
counts, episode caps, seeds, threads and data location, so it checks the real thing. Slow: one
task per domain x all methods runs through the real workflow on real-format data made locally
(tests/paper_data.py) and the real environments, and every finished run is checked against its
domain's conventions, not just its exit code.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from analysis.run_checks import check_results
from calql.agents import config_methods
from calql.config import read_config_file, validate_config
from calql.errors import ConfigError
from calql.training.resolve import resolve_all
from tests.test_workflow import dry_run, job_counts, place_local_sources, snakemake

REPO = Path(__file__).resolve().parent.parent
PAPER = REPO / "config" / "paper.yaml"
SMOKE = REPO / "config" / "paper-smoke.yaml"

#: Run-config keys the smoke may change: compute placement and probe size at the top, budgets
#: (and nothing that changes what an update or an episode is) in each phase.
RUN_KEYS_ALLOWED = {"threads", "calibration_states"}
PHASE_KEYS_ALLOWED = {
    "pretrain": {"steps", "eval_every", "eval_episodes", "checkpoint_every"},
    "finetune": {"env_steps", "eval_every_env_steps", "eval_episodes", "checkpoint_every_env_steps", "random_steps"},
}
#: Task keys the smoke may change: the episode cap and where the data files are.
TASK_PATHS_ALLOWED = {("env", "max_episode_steps"), ("source", "expert"), ("source", "bc")}
#: One task per domain for CI (the whole 10 x 8 matrix: scripts/paper_smoke.sh).
CI_TASKS = ("antmaze-large-diverse", "kitchen-partial", "door-binary")


def smoke_config() -> dict[str, Any]:
    return validate_config(read_config_file(SMOKE))


def paper_config() -> dict[str, Any]:
    return validate_config(read_config_file(PAPER))


def _strip_phase(phase: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    return None if phase is None else {k: v for k, v in phase.items() if k not in PHASE_KEYS_ALLOWED[name]}


def comparable_run(run: dict[str, Any]) -> dict[str, Any]:
    """A resolved run config without the keys the smoke may change."""
    out = {k: v for k, v in run.items() if k not in RUN_KEYS_ALLOWED}
    out["pretrain"] = _strip_phase(run["pretrain"], "pretrain")
    out["finetune"] = _strip_phase(run["finetune"], "finetune")
    return out


def comparable_task(task: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(task)
    for section, key in TASK_PATHS_ALLOWED:
        out.get(section, {}).pop(key, None)
    return out


# ----------------------------------------------------------------------------- fast
def test_smoke_resolves_to_the_paper_runs_outside_budgets_caps_seeds_and_data() -> None:
    paper, smoke = paper_config(), smoke_config()
    assert list(smoke["tasks"]) == list(paper["tasks"])
    assert list(config_methods(smoke)) == list(config_methods(paper))
    paper_runs, smoke_runs = resolve_all(paper), resolve_all(smoke)
    assert paper_runs.keys() == smoke_runs.keys()
    for key, paper_run in paper_runs.items():
        smoke_run = smoke_runs[key]
        assert comparable_run(smoke_run) == comparable_run(paper_run), key
        # budgets are smaller, never larger, and a phase the paper skips stays skipped
        assert (smoke_run["pretrain"] is None) == (paper_run["pretrain"] is None), key
        if paper_run["pretrain"]:
            assert smoke_run["pretrain"]["steps"] < paper_run["pretrain"]["steps"], key
        assert smoke_run["finetune"]["env_steps"] < paper_run["finetune"]["env_steps"], key
        # random exploration only where the paper has it, and then still some
        paper_random = paper_run["finetune"].get("random_steps", 0)
        smoke_random = smoke_run["finetune"].get("random_steps", 0)
        assert (smoke_random > 0) == (paper_random > 0), key
    for name, task in paper["tasks"].items():
        assert comparable_task(smoke["tasks"][name]) == comparable_task(task), name
        cap = smoke["tasks"][name]["env"].get("max_episode_steps")
        assert cap is None or cap <= task["env"].get("max_episode_steps", cap), name


def test_the_equality_check_catches_a_changed_setting() -> None:
    """The comparison is not blind: a hyperparameter, a reward or a batch size changed by the
    smoke would be caught."""
    smoke = smoke_config()
    paper_runs = resolve_all(paper_config())
    edits = (
        ("overrides", "calql", {"cql_min_q_weight": 1.0}),
        ("overrides", "awac", {"reward": {"scale": 10.0, "bias": 0.0}}),
        ("finetune", "batch_size", 64),
    )
    for section, key, value in edits:
        changed = copy.deepcopy(smoke)
        changed["train"].setdefault(section, {})[key] = value
        runs = resolve_all(changed)
        assert any(comparable_run(runs[k]) != comparable_run(paper_runs[k]) for k in runs), (section, key)


def test_a_method_block_budget_applies_to_that_method_alone() -> None:
    runs = resolve_all(smoke_config())
    for (task, method), run in runs.items():
        random_steps = run["finetune"].get("random_steps", 0)
        assert random_steps == (50 if method == "rlpd" else 0), (task, method)
    bad = smoke_config()
    bad["train"]["overrides"]["rlpd"]["finetune"] = {"random_stepz": 5}
    with pytest.raises(ConfigError, match="random_stepz"):
        resolve_all(bad)


def test_the_cpu_config_is_the_paper_on_cpu_with_the_measured_time_limits() -> None:
    """config/paper-cpu.yaml runs the paper's runs on CPU nodes; its Slurm time limits are those
    the measured cost plan (benchmarks/results_paper_cost.json, 2 threads) derives."""
    cpu = validate_config(read_config_file(REPO / "config" / "paper-cpu.yaml"))
    paper_runs, cpu_runs = resolve_all(paper_config()), resolve_all(cpu)
    assert paper_runs.keys() == cpu_runs.keys()
    for key, run in paper_runs.items():
        assert {**cpu_runs[key], "device": run["device"]} == run, key
        assert cpu_runs[key]["device"] == "cpu"
    measured = json.loads((REPO / "benchmarks" / "results_paper_cost.json").read_text())["cpu"]["totals"]
    assert measured["threads"] == cpu["train"]["threads"]
    for rule in ("pretrain", "finetune"):
        resources = cpu["resources"][rule]
        assert resources["gpu"] == 0 and resources["threads"] == measured["threads"], rule
        assert resources["runtime"] == measured[rule]["runtime_min"], rule
        assert resources["runtime"] >= 60 * measured["margin"] * measured[rule]["longest"]["hours"], rule


def test_extends_merges_mappings_replaces_lists_and_refuses_cycles(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"seeds": [0, 1, 2], "train": {"threads": 2, "pretrain": {"steps": 9}}}))
    (tmp_path / "sub").mkdir()
    top = tmp_path / "sub" / "top.yaml"
    top.write_text(yaml.safe_dump({"extends": "../base.yaml", "seeds": [5], "train": {"pretrain": {"steps": 3}}}))
    assert read_config_file(top) == {"seeds": [5], "train": {"threads": 2, "pretrain": {"steps": 3}}}
    base.write_text(yaml.safe_dump({"extends": "sub/top.yaml", "seeds": [1]}))
    with pytest.raises(ConfigError, match="cycle"):
        read_config_file(top)
    top.write_text(yaml.safe_dump({"extends": "../missing.yaml"}))
    with pytest.raises(ConfigError, match="missing.yaml"):
        read_config_file(top)


def test_smoke_dry_run_plans_the_paper_job_table(tmp_path: Path) -> None:
    """The workflow reads the overlay through its base: the same jobs as the paper config, one seed."""
    place_local_sources(tmp_path / "paper", PAPER)
    place_local_sources(tmp_path / "smoke", SMOKE)
    paper_out = dry_run("--configfile", str(PAPER), "--directory", str(tmp_path / "paper"))
    smoke_out = dry_run("--configfile", str(SMOKE), "--directory", str(tmp_path / "smoke"))
    paper_counts, smoke_counts = job_counts(paper_out), job_counts(smoke_out)
    n_seeds = len(paper_config()["seeds"])
    for rule in ("pretrain", "finetune"):
        assert smoke_counts[rule] * n_seeds == paper_counts[rule], (rule, smoke_counts, paper_counts)
    for rule in ("dataset", "label", "run_config"):
        assert smoke_counts[rule] == paper_counts[rule], rule
    assert "results/paper-smoke/runs/antmaze-large-diverse/rlpd/seed0/finetune/run.json" in smoke_out


# ----------------------------------------------------------------------------- slow
def _ci_config(workdir: Path) -> Path:
    """The smoke config cut to CI_TASKS, written whole (no `extends`) into the work folder."""
    config = read_config_file(SMOKE)
    config["tasks"] = {name: config["tasks"][name] for name in CI_TASKS}
    per_task = config["train"].get("per_task", {})
    config["train"]["per_task"] = {k: v for k, v in per_task.items() if k in CI_TASKS}
    path = workdir / "config" / "paper-smoke-ci.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Real-format data made locally, then the smoke (CI_TASKS x all methods) through Snakemake."""
    from tests.paper_data import build_paper_data

    workdir = tmp_path_factory.mktemp("paper-smoke")
    data = workdir / "data" / "paper-smoke"
    build_paper_data(data, tasks=CI_TASKS)
    config_path = _ci_config(workdir)
    env_before = {k: os.environ.get(k) for k in ("MINARI_DATASETS_PATH", "HF_HUB_OFFLINE")}
    os.environ["MINARI_DATASETS_PATH"] = str(data / "minari")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        start = time.perf_counter()
        result = snakemake(
            "--configfile", str(config_path), "--directory", str(workdir), "--cores", "2", "all", timeout=3000
        )
        wall = time.perf_counter() - start
    finally:
        for k, v in env_before.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert result.returncode == 0, result.stdout[-8000:]
    print(f"\npaper smoke ({len(CI_TASKS)} tasks x 8 methods): {wall:.0f} s wall on 2 cores")
    return workdir, validate_config(read_config_file(config_path))


@pytest.mark.slow
def test_every_smoke_run_finished_and_kept_its_domain_conventions(smoke_run: tuple[Path, dict[str, Any]]) -> None:
    workdir, config = smoke_run
    results = workdir / config["results_dir"]
    problems = check_results(results, config)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_smoke_reaches_the_tables_and_figures(smoke_run: tuple[Path, dict[str, Any]]) -> None:
    workdir, config = smoke_run
    results = workdir / config["results_dir"]
    with open(results / "summary" / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    n_methods = len(config_methods(config))
    assert len(rows) == len(CI_TASKS) * n_methods * len(config["seeds"]), rows
    assert {r["task"] for r in rows} == set(CI_TASKS)
    assert len(list((results / "figures").glob("*.png"))) >= 4
    imported = json.loads((results / "mlflow" / "imported.json").read_text())
    assert imported, "nothing imported into MLflow"
