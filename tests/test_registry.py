"""The algorithm registry and named variants: a new algorithm flows through the workflow, the
MLflow import and the analysis with no code change; variants resolve, are refused when wrong,
and are labelled and tagged as the config says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from calql.agents import ALGORITHMS, algorithm_names, config_methods, get_method
from calql.config import load_config, validate_config
from calql.errors import ConfigError
from calql.training.resolve import resolve_all, resolve_run_config, run_phases

REPO = Path(__file__).resolve().parent.parent
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"
CORL = {"algo": "calql", "overrides": {"calibrate_online": False}, "label": "Cal-QL (no online bound)"}


def _config(methods: list) -> dict:
    config = load_config(TEST_CONFIG)
    config["methods"] = methods
    return validate_config(config)


# ----------------------------------------------------------------------------- variants
def test_variant_resolves_to_its_algorithm_with_overrides() -> None:
    config = _config(["calql", {"calql-corl": CORL}])
    runs = resolve_all(config)
    base, variant = runs["pointmaze-tiny", "calql"], runs["pointmaze-tiny", "calql-corl"]
    assert variant["algorithm"] == "calql" and variant["variant"] == {"calibrate_online": False}
    assert base["agent"]["calibrate_online"] is True and variant["agent"]["calibrate_online"] is False
    # everything else is the algorithm's: same preset, same budgets
    assert {k: v for k, v in variant["agent"].items() if k != "calibrate_online"} == {
        k: v for k, v in base["agent"].items() if k != "calibrate_online"
    }
    assert variant["pretrain"] == base["pretrain"] and variant["finetune"] == base["finetune"]
    # an algorithm listed by name records neither key, so existing runs keep their config hash
    assert "algorithm" not in base and "variant" not in base
    assert run_phases("calql-corl", config) == ("pretrain", "finetune")


def test_override_precedence_algorithm_block_then_variant_then_variant_block() -> None:
    variant = {"algo": "cql", "overrides": {"cql_min_q_weight": 1.0, "cql_temp": 2.0}}
    config = _config(["cql", {"cql-w1": variant}])
    config["train"]["overrides"] = {"cql": {"cql_min_q_weight": 3.0, "cql_n_actions": 4}, "cql-w1": {"cql_temp": 0.5}}
    runs = resolve_all(config)
    assert runs["pointmaze-tiny", "cql"]["agent"]["cql_min_q_weight"] == 3.0
    agent = runs["pointmaze-tiny", "cql-w1"]["agent"]
    # the algorithm's block applies to its variants; the variant's own overrides win over it, and
    # the block named after the variant wins over both
    assert agent["cql_n_actions"] == 4 and agent["cql_min_q_weight"] == 1.0 and agent["cql_temp"] == 0.5


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"x": {"algo": "calqll"}}, "unknown algorithm 'calqll' (registered: calql"),
        ({"x": {"algo": "calql", "overrides": {"calibrate_onlin": False}}}, "unknown hyperparameter 'calibrate_onlin'"),
        ({"x": {"algo": "calql", "overide": {}}}, "unknown key 'overide'"),
        ({"calql": {"algo": "cql"}}, "may not take the name of the algorithm 'calql'"),
        ("calqll", "unknown algorithm 'calqll'"),
    ],
)
def test_bad_method_entries_are_refused_naming_the_valid_ones(entry: object, message: str) -> None:
    config = load_config(TEST_CONFIG)
    config["methods"] = ["cql", entry]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        resolve_all(validate_config(config))


def test_bad_variant_fails_the_workflow_before_any_job(tmp_path: Path) -> None:
    config = load_config(TEST_CONFIG)
    config["methods"] = ["cql", {"x": {"algo": "calql", "overrides": {"calibrate_onlin": False}}}]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = _snakemake(tmp_path, "--dry-run", "--configfile", str(tmp_path / "bad.yaml"))
    assert result.returncode != 0
    assert "unknown hyperparameter 'calibrate_onlin'" in result.stdout and "calibrate_online" in result.stdout


def test_hybrid_rl_is_sac_on_mixed_batches_without_pretraining() -> None:
    runs = resolve_all(_config(["sac", "hybrid"]))
    sac, hybrid = runs["pointmaze-tiny", "sac"], runs["pointmaze-tiny", "hybrid"]
    assert sac["pretrain"] is None and hybrid["pretrain"] is None
    assert sac["finetune"]["mixing_ratio"] == 0.0 and hybrid["finetune"]["mixing_ratio"] == 0.5
    assert sac["agent"] == hybrid["agent"]
    assert ALGORITHMS["hybrid"].agent is ALGORITHMS["sac"].agent


def test_unknown_method_lists_config_and_registry() -> None:
    with pytest.raises(ConfigError, match="unknown method 'calq'.*Did you mean"):
        resolve_run_config(_config(["calql"]), "pointmaze-tiny", "calq")
    assert list(config_methods(_config(["sac", "calql"]))) == ["sac", "calql"]
    assert get_method({}, "cql").algorithm is ALGORITHMS["cql"]


# ----------------------------------------------------------------------------- a toy plugin
TOY_MODULE = '''
"""A toy algorithm from outside the package: SAC with a renamed agent and one extra field."""
from dataclasses import dataclass

from calql.agents import Algorithm, register
from calql.agents.hyperparameters import SACConfig
from calql.agents.sac import SACAgent


@dataclass
class ToyConfig(SACConfig):
    toy_flag: bool = False


class ToyAgent(SACAgent):
    method = "toy"


def register_toy():
    register(
        Algorithm("toy", ToyAgent, ToyConfig, "Toy SAC", "#123456", pretrains=False, offline_data_online=True),
        replace=True,
    )
'''


def _plugin(root: Path) -> Path:
    """An installed-looking distribution on sys.path that declares the toy algorithm as an entry point."""
    root.mkdir()
    (root / "toy_algo.py").write_text(TOY_MODULE)
    info = root / "toy_algo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-algo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[calql.algorithms]\ntoy = toy_algo:register_toy\n")
    return root


def _env(plugin: Path | None = None) -> dict[str, str]:
    path = [str(plugin)] if plugin else []
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([*path, str(REPO)])}


def _snakemake(
    workdir: Path, *args: str, plugin: Path | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"), "--cores", "2"]
        + ["--directory", str(workdir), *args],
        env=_env(plugin),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_plugin_algorithm_and_variant_flow_through_workflow_tracking_and_analysis(tmp_path: Path) -> None:
    """A toy algorithm registered by an entry point (no change to this repository's code) and a
    named variant of it: dry run, real training, MLflow import and analysis all pick them up."""
    plugin = _plugin(tmp_path / "plugin")
    assert "toy" not in algorithm_names()  # only the subprocesses, which see the plugin, know it
    workdir = tmp_path / "wf"
    (workdir / "config").mkdir(parents=True)
    config = yaml.safe_load(TEST_CONFIG.read_text())
    variant = {"algo": "toy", "overrides": {"toy_flag": True}, "label": "Toy SAC (flag)", "color": "#654321"}
    config.update(seeds=[0], methods=["toy", {"toy-flag": variant}])
    config["train"]["finetune"].update(env_steps=200, eval_every_env_steps=100)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))

    dry = _snakemake(workdir, "--dry-run", "all", plugin=plugin)
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert "pretrain" not in dry.stdout.split("Job stats:")[1].split("total")[0]  # toy does not pre-train
    assert "toy-flag" in dry.stdout

    run = _snakemake(workdir, "all", plugin=plugin, timeout=900)
    assert run.returncode == 0, run.stdout[-6000:]
    results = workdir / "results"
    record = json.loads((results / "runs/pointmaze-tiny/toy-flag/seed0/finetune/run.json").read_text())
    assert record["config"]["algorithm"] == "toy" and record["config"]["agent"]["toy_flag"] is True
    scores = pd.read_csv(results / "summary" / "scores.csv")
    assert set(scores["method"]) == {"toy", "toy-flag"} and (scores["status"] == "complete").all()
    table = (results / "summary" / "tables" / "overview.md").read_text()
    assert "Toy SAC (flag)" in table and "Toy SAC" in table

    probe = textwrap.dedent(
        f"""
        import json, mlflow
        from mlflow import MlflowClient
        client = MlflowClient(tracking_uri="sqlite:///{results / "mlflow" / "mlflow.db"}")
        exp = client.get_experiment_by_name("ci")
        runs = client.search_runs([exp.experiment_id])
        print(json.dumps(sorted([r.data.tags["algorithm"], r.data.tags["variant"],
                                 r.data.tags["variant_overrides"]] for r in runs)))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], env=_env(), capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        ["toy", "toy", "{}"],
        ["toy", "toy-flag", '{"toy_flag": true}'],
    ]
    shutil.rmtree(workdir / "results" / "runs")  # the checkpoints are large for a tmp folder
