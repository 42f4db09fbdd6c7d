"""The run config files (issue 11.1): resolved once by the workflow, read by the training jobs as they are."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from calql import rerun_keys
from calql.cli import main
from calql.config import get_task, load_config, validate_config
from calql.errors import ConfigError
from calql.training.resolve import resolve_run_config
from calql.training.run_spec import FORMAT, TRAINING_TASK_KEYS, RunSpec, live_tracking_settings, parse_live_tracking
from tests.conftest import REPO
from tests.test_training import TINY_TRAIN, labeled_dataset, make_config, metrics_without_timing  # noqa: F401


def test_round_trip_holds_the_resolved_run_and_its_task(tmp_path: Path) -> None:
    config = load_config(make_config(tmp_path))
    spec = RunSpec.from_config(config, "umaze", "calql")
    assert spec.run == resolve_run_config(config, "umaze", "calql")
    task = get_task(config, "umaze")
    assert dataclasses.replace(spec.task, source=task.source, preprocess=task.preprocess) == task
    assert (spec.task_name, spec.method) == ("umaze", "calql")
    for phase in ("pretrain", "finetune"):
        spec.write(tmp_path / f"{phase}.json", phase)
        read = RunSpec.read(tmp_path / f"{phase}.json", phase)
        assert read == spec and read.task == spec.task
        assert json.loads((tmp_path / f"{phase}.json").read_text())["format"] == FORMAT
    with pytest.raises(ConfigError, match="is the 'pretrain' phase's, not finetune's"):
        RunSpec.read(tmp_path / "pretrain.json", "finetune")


def test_the_file_holds_what_training_reads_and_no_tracking(tmp_path: Path) -> None:
    """Where a run is logged changes none of its numbers: it stays out of the run config file
    (and reaches a job as --live-tracking), so editing `tracking` rewrites no file."""
    quiet = load_config(make_config(tmp_path, tracking={"log_checkpoints": False}))
    live = load_config(make_config(tmp_path, tracking={"live": True, "uri": "http://127.0.0.1:9"}))
    assert RunSpec.from_config(quiet, "umaze", "iql") == RunSpec.from_config(live, "umaze", "iql")
    assert set(RunSpec.from_config(live, "umaze", "iql").task_config) == set(TRAINING_TASK_KEYS)
    assert live_tracking_settings(quiet) is None
    settings = live_tracking_settings(live)
    assert settings == {"experiment": "pytest", "results_dir": live["results_dir"], "tracking": live["tracking"]}
    assert parse_live_tracking(json.dumps(settings)) == settings
    for bad in ("{not json", json.dumps({"tracking": {}})):
        with pytest.raises(ConfigError, match="--live-tracking"):
            parse_live_tracking(bad)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("{not json", "is not readable JSON"),
        (json.dumps({"format": FORMAT + 1, "run": {}}), f"expected {FORMAT}"),
        (json.dumps([1, 2]), "has format 'list'"),
        (json.dumps({"format": FORMAT, "phase": "pretrain", "run": {"task": "umaze"}, "task": {}}), "lacks"),
    ],
)
def test_a_damaged_or_foreign_file_is_refused_by_name(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "runs" / "umaze" / "calql" / "pretrain.json"
    if content is not None:
        path.parent.mkdir(parents=True)
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        RunSpec.read(path, "pretrain")
    assert str(path) in str(info.value)


def test_a_job_reads_only_its_run_config_file(tmp_path: Path, labeled_dataset: Path) -> None:  # noqa: F811
    """`calql pretrain/finetune --run-config FILE` needs no config file and gives the numbers of
    the same run resolved from the config by hand (--config --task --method)."""
    train = copy.deepcopy(TINY_TRAIN)
    train["pretrain"].update(steps=60, eval_every=30)
    train["finetune"].update(env_steps=300)
    cfg_path = make_config(tmp_path, train)
    spec = RunSpec.from_config(load_config(cfg_path), "umaze", "cql")
    for phase in ("pretrain", "finetune"):
        spec.write(tmp_path / "configs" / f"{phase}.json", phase)
    common = ["--seed", "1", "--dataset", str(labeled_dataset)]
    by_hand = ["--config", str(cfg_path), "--task", "umaze", "--method", "cql", *common]
    for phase in ("pretrain", "finetune"):
        assert main(["-q", phase, *by_hand, "--run-dir", str(tmp_path / "by-hand")]) == 0
    cfg_path.unlink()  # the job must not need it
    for phase in ("pretrain", "finetune"):
        spec_path = tmp_path / "configs" / f"{phase}.json"
        assert main(["-q", phase, "--run-config", str(spec_path), *common, "--run-dir", str(tmp_path / "job")]) == 0
    for phase in ("pretrain", "finetune"):
        job, hand = tmp_path / "job" / phase, tmp_path / "by-hand" / phase
        assert metrics_without_timing(job / "metrics.csv") == metrics_without_timing(hand / "metrics.csv")
        assert (
            json.loads((job / "run.json").read_text())["config"]
            == json.loads((hand / "run.json").read_text())["config"]
        )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run-config", "x.json", "--task", "umaze"], "--run-config holds the whole run: drop --task"),
        (["--config", "c.yaml", "--task", "umaze"], "missing: --method"),
        ([], "give --run-config FILE, or --config, --task and --method"),
        (
            ["--config", "c.yaml", "--task", "umaze", "--method", "iql", "--live-tracking", "{}"],
            "goes with --run-config",
        ),
    ],
)
def test_run_arguments_that_do_not_fit_together_are_named(
    args: list[str], message: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cmd = ["pretrain", *args, "--seed", "0", "--dataset", "d.hdf5", "--run-dir", str(tmp_path / "run")]
    assert main(cmd) == 2
    assert message in caplog.text
    assert not (tmp_path / "run").exists()


TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"
EDITS = {
    "reward scale": lambda c: c["tasks"]["pointmaze-tiny"]["reward"].update(scale=1.0),
    "gamma": lambda c: c["tasks"]["pointmaze-tiny"].update(gamma=0.95),
    "episode length": lambda c: c["tasks"]["pointmaze-tiny"]["env"].update(max_episode_steps=123),
    "data source": lambda c: c["tasks"]["pointmaze-tiny"]["source"].update(seed=7),
    "pretrain budget": lambda c: c["train"]["pretrain"].update(steps=200),
    "finetune budget": lambda c: c["train"]["finetune"].update(env_steps=400),
    "hyperparameter": lambda c: c["train"].setdefault("overrides", {}).setdefault("cql", {}).update(policy_lr=3e-4),
    "threads": lambda c: c["train"].update(threads=2),
    "tracking": lambda c: c.update(tracking={"live": True, "uri": "http://127.0.0.1:9"}),
    "analysis": lambda c: c["analysis"].update(n_bootstrap=100),
    "experiment": lambda c: c.update(experiment="renamed"),
}


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_a_phase_file_changes_only_with_its_rerun_key(phase: str, edit: str) -> None:
    """The workflow rewrites a phase's file exactly when that phase's rerun key changes: so
    everything the phase reads from it must be covered by the key. Its copy of the other phase's
    budget (recorded in run.json, never read) is the only part allowed to lag behind."""
    other = {"pretrain": "finetune", "finetune": "pretrain"}[phase]

    def file_and_key(config: dict) -> tuple[dict, str]:
        config = validate_config(config)
        spec = RunSpec.from_config(config, "pointmaze-tiny", "cql")
        content = spec.to_dict(phase)
        content["run"] = {k: v for k, v in content["run"].items() if k != other}
        return content, rerun_keys.train_key(config, spec.run, phase)

    base = yaml.safe_load(TEST_CONFIG.read_text())
    edited = copy.deepcopy(base)
    EDITS[edit](edited)
    (content_a, key_a), (content_b, key_b) = file_and_key(base), file_and_key(edited)
    if content_a != content_b:
        assert key_a != key_b, f"{edit} changes the {phase} file but not its rerun key"
