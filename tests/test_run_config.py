"""The typed run config: defaults written once, validation, and a serialiser that keeps every hash.

``fixtures/run_config_hashes.json`` holds, for every (task, method) of every committed config, the
run hash and both phase hashes as resolved before the run config was typed (commit 7b357da). Runs
made since then record these hashes in their run.json and checkpoints, and Snakemake's rerun keys
are made from them: if one changed, existing results would be re-run (or reported stale).
When a committed config is changed on purpose (its runs must rerun), rewrite the fixture with
``.venv/bin/python tests/test_run_config.py --write`` and commit it with the config.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from calql.config import load_config
from calql.errors import ConfigError
from calql.run_files import config_hash, phase_hash
from calql.training.resolve import merge_layers, resolve, resolve_all
from calql.training.run_config import FinetuneBudget, PretrainBudget, RunConfig, base_budgets

REPO = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "run_config_hashes.json"
HASHES = json.loads(FIXTURE.read_text())
#: Every committed experiment config (an overlay such as paper-cpu.yaml resolves with its base).
CONFIG_FILES = sorted(
    str(p.relative_to(REPO))
    for p in [*REPO.glob("config/*.yaml"), *REPO.glob("config/sweeps/*.yaml"), REPO / ".test/config/config.yaml"]
)


def hashes_of(config_file: str) -> dict[str, dict[str, str | None]]:
    """Run hash and phase hashes of every (task, method) of a committed config."""
    runs = resolve_all(load_config(REPO / config_file))
    return {
        f"{task}/{method}": {
            "run": config_hash(run),
            "pretrain": phase_hash(run, "pretrain") if run["pretrain"] is not None else None,
            "finetune": phase_hash(run, "finetune"),
        }
        for (task, method), run in runs.items()
    }


def test_every_committed_config_is_pinned() -> None:
    assert sorted(HASHES) == CONFIG_FILES


@pytest.mark.parametrize("config_file", sorted(HASHES))
def test_every_committed_config_resolves_to_its_recorded_hashes(config_file: str) -> None:
    assert hashes_of(config_file) == HASHES[config_file]


@pytest.mark.parametrize("config_file", sorted(HASHES))
def test_the_json_form_reads_back_to_the_same_run(config_file: str) -> None:
    config = load_config(REPO / config_file)
    for task, method in resolve_all(config):
        run = resolve(config, task, method)
        assert RunConfig.from_json(run.to_json()) == run
        assert RunConfig.from_json(run.to_json()).to_json() == run.to_json()


def test_budget_defaults_are_the_dataclass_fields() -> None:
    base = base_budgets()
    assert base["pretrain"] == dataclasses.asdict(PretrainBudget())
    assert base["finetune"] == dataclasses.asdict(FinetuneBudget())
    assert FinetuneBudget().update_schedule == "episode" and FinetuneBudget().random_steps == 0


def test_keys_at_their_old_default_are_left_out_of_the_json_and_read_back() -> None:
    config = load_config(REPO / "config" / "config.yaml")
    run = resolve(config, "pointmaze-medium", "calql")
    data = run.to_json()
    assert not {"random_steps", "pool_offline", "update_schedule"} & set(data["finetune"])
    assert "algorithm" not in data and "variant" not in data
    back = RunConfig.from_json(data)
    assert back.finetune.update_schedule == "episode" and back.algorithm == "calql" and back.variant == {}


def test_a_used_key_and_a_variant_are_recorded() -> None:
    config = load_config(REPO / "config" / "config.yaml")
    config["methods"] = [*config["methods"], {"calql-a5": {"algo": "calql", "overrides": {"cql_min_q_weight": 5.0}}}]
    config["train"]["finetune"] = {**config["train"].get("finetune", {}), "update_schedule": "step"}
    data = resolve(config, "pointmaze-medium", "calql-a5").to_json()
    assert data["finetune"]["update_schedule"] == "step"
    assert data["algorithm"] == "calql" and data["variant"] == {"cql_min_q_weight": 5.0}


def test_sac_has_no_pretraining_and_no_offline_share() -> None:
    run = resolve(load_config(REPO / "config" / "config.yaml"), "pointmaze-medium", "sac")
    assert run.pretrain is None and run.finetune.mixing_ratio == 0.0
    with pytest.raises(ConfigError, match="no pretrain phase"):
        run.budget("pretrain")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"finetune": {"mixing_ratio": 1.5}}, r"finetune.mixing_ratio must be in \[0, 1\]"),
        ({"finetune": {"utd_ratio": 0.0}}, "finetune.utd_ratio must be > 0"),
        ({"pretrain": {"steps": 2.5}}, "pretrain.steps must be a positive integer"),
        ({"finetune": {"eval_episodes": 0}}, "finetune.eval_episodes must be a positive integer"),
        ({"finetune": {"update_schedule": "sometimes"}}, "finetune.update_schedule must be one of"),
        ({"score": "median"}, "score must be one of"),
    ],
)
def test_a_bad_budget_is_refused_naming_the_key(change: dict, message: str) -> None:
    run = resolve(load_config(REPO / "config" / "config.yaml"), "pointmaze-medium", "calql").to_json()
    for section, values in change.items():
        run[section] = {**run[section], **values} if isinstance(values, dict) else values
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_json(run)


def test_merge_names_an_unknown_budget_key() -> None:
    config = load_config(REPO / "config" / "config.yaml")
    config["train"]["finetune"] = {"env_step": 10}
    with pytest.raises(ConfigError, match=r"unknown key 'train.finetune.env_step'.*env_steps"):
        merge_layers(config, "pointmaze-medium", "calql")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python tests/test_run_config.py --write  (rewrites the hash fixture)")
    FIXTURE.write_text(json.dumps({f: hashes_of(f) for f in CONFIG_FILES}, indent=1, sort_keys=True) + "\n")
