"""Issue 20.3: a config's data sources and environments are checked before a single job runs
(calql.data.sources.preflight), by `calql check-config` and by the workflow's parse step."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from calql.config import validate_config
from calql.data.sources.preflight import SourceReport, check_sources, minari_id_problem
from calql.errors import ConfigError
from tests.conftest import UMAZE_TASK
from tests.test_workflow import TEST_CONFIG, snakemake

MISSING = "data/does-not-exist.hdf5"


def config_with(tmp_path: Path, **task_changes: Any) -> dict[str, Any]:
    """A validated one-task config (the tiny U-maze task, changed), results under tmp_path."""
    task = {**copy.deepcopy(UMAZE_TASK), **task_changes}
    return validate_config({"experiment": "x", "results_dir": str(tmp_path / "results"), "tasks": {"t": task}})


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Relative source paths are taken from the working directory: make it tmp_path, and point the
    local Minari root there too (nothing of the user's is looked at)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path


# ----------------------------------------------------------------------------- problems
def test_missing_file_names_the_working_directory(tmp_path: Path) -> None:
    report = check_sources(config_with(tmp_path, source={"kind": "file", "path": MISSING}))
    assert report.problems == [
        f"task 't': source.path '{MISSING}' does not exist (paths are relative to the working directory "
        f"{tmp_path}; resolved to {tmp_path / MISSING})"
    ]
    with pytest.raises(ConfigError, match=r"1 problem\(s\).*\n  - task 't': source.path"):
        report.raise_for_problems()


def test_present_file_is_no_problem(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / MISSING).touch()
    report = check_sources(config_with(tmp_path, source={"kind": "file", "path": MISSING}))
    assert report == SourceReport()


def test_awac_npy_pair_names_only_the_missing_file(tmp_path: Path) -> None:
    expert, bc = "hand/pen2_sparse.npy", "hand/pen_bc_sparse4.npy"
    (tmp_path / "hand").mkdir()
    (tmp_path / expert).touch()
    source = {"kind": "awac_npy", "expert": expert, "bc": bc}
    [problem] = check_sources(config_with(tmp_path, source=source)).problems
    assert problem.startswith(f"task 't': source.bc '{bc}' does not exist") and str(tmp_path / bc) in problem
    assert "expert" not in problem and expert not in problem


@pytest.mark.parametrize(
    "dataset_id",
    ["D4RL//antmaze/large-diverse-v1", "D4RL/ant maze/large-diverse-v1", "/antmaze-v1", "D4RL/antmaze/-v1"],
)
def test_malformed_minari_id_names_the_id_and_the_form(tmp_path: Path, dataset_id: str) -> None:
    [problem] = check_sources(config_with(tmp_path, source={"kind": "minari", "id": dataset_id})).problems
    assert problem == (
        f"task 't': source.id '{dataset_id}' is not a Minari dataset id: expected namespace/name-vN, "
        "e.g. D4RL/antmaze/large-diverse-v1 (letters, digits, '_' and '-' in each '/'-separated part, "
        "no empty part, and a version)"
    )


def test_minari_id_rules() -> None:
    """The schema already wants a trailing -vN; minari's parser (with the empty-part rule) decides the rest."""
    for good in ("D4RL/antmaze/large-diverse-v1", "D4RL/kitchen/mixed-v2", "pointmaze-umaze-v0"):
        assert minari_id_problem("t", good) is None, good
    assert minari_id_problem("t", "D4RL/antmaze/large-diverse") is not None  # no version


def test_unregistered_env_id_is_named_with_a_suggestion(tmp_path: Path) -> None:
    env = {**UMAZE_TASK["env"], "id": "PointMaze_Umaze-v3"}
    [problem] = check_sources(config_with(tmp_path, env=env)).problems
    assert problem.startswith(
        "task 't': env.id 'PointMaze_Umaze-v3' is not a registered Gymnasium environment (gymnasium-robotics "
        "included). Did you mean: PointMaze_UMaze-v3"
    ), problem


def test_minari_without_download_must_be_in_the_local_root(tmp_path: Path) -> None:
    dataset_id = "D4RL/antmaze/large-diverse-v1"
    source = {"kind": "minari", "id": dataset_id, "download": False}
    [problem] = check_sources(config_with(tmp_path, source=source)).problems
    root = tmp_path / "minari"
    assert f"Minari dataset '{dataset_id}' is not in the local Minari root {root} " in problem
    assert "source.download is false" in problem
    (root / dataset_id / "data").mkdir(parents=True)  # where minari.load_dataset looks
    assert check_sources(config_with(tmp_path, source=source)) == SourceReport()


def test_unknown_d4rl_name_is_named_with_a_suggestion(tmp_path: Path) -> None:
    source = {"kind": "d4rl", "name": "antmaze-large-divers-v2"}
    [problem] = check_sources(config_with(tmp_path, source=source)).problems
    assert "source.name 'antmaze-large-divers-v2' is not a known D4RL dataset" in problem
    assert "Did you mean: antmaze-large-diverse-v2" in problem
    source["url"] = "https://example.org/my.hdf5"  # any file by URL: nothing to check here
    assert not check_sources(config_with(tmp_path, source=source)).problems


# ----------------------------------------------------------------------------- notes
def test_what_a_job_creates_is_a_note_not_a_problem(tmp_path: Path) -> None:
    """A D4RL download, a Minari download and generated data do not exist yet, and need not."""
    tasks = {
        "d4rl": {"kind": "d4rl", "name": "antmaze-large-diverse-v2"},
        "minari": {"kind": "minari", "id": "D4RL/antmaze/large-diverse-v1"},
        "generated": {"kind": "generated"},
    }
    config = config_with(tmp_path)
    config["tasks"] = {name: {**config["tasks"]["t"], "source": source} for name, source in tasks.items()}
    report = check_sources(validate_config(config))
    assert report.problems == []
    cache = tmp_path / "results" / "cache" / "d4rl" / "antmaze-large-diverse-v2.hdf5"
    minari = tmp_path / "minari" / "D4RL" / "antmaze" / "large-diverse-v1"
    assert report.notes == [
        f"task 'd4rl': D4RL dataset 'antmaze-large-diverse-v2' will be downloaded by the dataset job to {cache}",
        f"task 'minari': Minari dataset 'D4RL/antmaze/large-diverse-v1' is not in the local Minari root "
        f"{tmp_path / 'minari'}; it will be downloaded by the dataset job to {minari} "
        f'(needs pip install "minari[hf]" and network access)',
        "task 'generated': the data will be generated by the dataset job (no download)",
    ]
    assert not (tmp_path / "minari").exists() and not (tmp_path / "results").exists(), "a check creates nothing"


def test_missing_source_of_a_built_dataset_is_a_note(tmp_path: Path) -> None:
    """Once `<results_dir>/datasets/<task>.hdf5` is built, only a rebuild reads the source."""
    config = config_with(tmp_path, source={"kind": "file", "path": MISSING})
    built = tmp_path / "results" / "datasets" / "t.hdf5"
    built.parent.mkdir(parents=True)
    built.touch()
    report = check_sources(config)
    assert report.problems == []
    [note] = report.notes
    assert f"source.path '{MISSING}' does not exist" in note and f"already built at {built}" in note


def test_validate_config_stays_schema_only(tmp_path: Path) -> None:
    """Analysis and tests resolve configs whose data are elsewhere: validation does not look for them."""
    config_with(tmp_path, source={"kind": "file", "path": MISSING})


# ----------------------------------------------------------------------------- CLI and workflow
def _bad_test_config(path: Path) -> Path:
    """The .test config with its task reading a file that does not exist."""
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["tasks"]["pointmaze-tiny"]["source"] = {"kind": "file", "path": MISSING}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_check_config_cli_fails_on_a_missing_file(tmp_path: Path) -> None:
    bad = _bad_test_config(tmp_path / "bad.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "calql", "check-config", str(bad)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f"{bad}: 1 problem(s) with the config's data or environments:\n"
        f"  - task 'pointmaze-tiny': source.path '{MISSING}' does not exist (paths are relative to the "
        f"working directory {tmp_path}; resolved to {tmp_path / MISSING})"
    ) in result.stderr, result.stderr
    assert "valid" not in result.stdout


def test_check_config_cli_prints_what_jobs_will_create(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from calql.cli import main

    assert main(["check-config", str(TEST_CONFIG)]) == 0
    out = capsys.readouterr().out
    assert "note: task 'pointmaze-tiny': the data will be generated by the dataset job (no download)" in out


def test_dry_run_fails_before_any_job_on_a_missing_file(tmp_path: Path) -> None:
    """`snakemake -n` stops at parse time, naming the task, the key and the working directory
    (`--directory`), before planning a job or writing a run config."""
    bad = _bad_test_config(tmp_path / "bad.yaml")
    result = snakemake("--dry-run", "--cores", "1", "--configfile", str(bad), "--directory", str(tmp_path))
    assert result.returncode != 0
    assert (
        f"task 'pointmaze-tiny': source.path '{MISSING}' does not exist (paths are relative to the working "
        f"directory {tmp_path}; resolved to {tmp_path / MISSING})"
    ) in result.stdout, result.stdout[-3000:]
    assert "Job stats" not in result.stdout
    assert not (tmp_path / "results").exists()
