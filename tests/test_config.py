"""Config validation names the bad key or value."""

import logging
from pathlib import Path

import pytest
import yaml

from calql.config import get_task, load_config, validate_config
from calql.errors import ConfigError
from tests.conftest import UMAZE_TASK

REPO = Path(__file__).resolve().parent.parent


def _cfg(**task_changes):
    task = {**UMAZE_TASK, **task_changes}
    return {"experiment": "x", "tasks": {"umaze": task}}


def test_defaults_filled(umaze_config):
    config = load_config(umaze_config)
    assert config["seeds"] == [0, 1, 2] and config["methods"] == ["calql", "cql", "iql", "sac"]
    assert config["tasks"]["umaze"]["gamma"] == 0.99
    task = get_task(config, "umaze")
    assert task.reward.scaled_negative == -5.0 and task.obs_keys == ("observation",)


def test_unknown_task_key_is_named_with_suggestion():
    cfg = _cfg(rewrd={"scale": 1})
    with pytest.raises(ConfigError, match=r"tasks/umaze.*'rewrd'.*Did you mean: reward"):
        validate_config(cfg)


def test_source_key_of_other_kind_rejected():
    cfg = _cfg(source={"kind": "d4rl", "name": "antmaze-large-diverse-v2", "n_transitions": 10})
    with pytest.raises(ConfigError, match="n_transitions"):
        validate_config(cfg)


def test_bad_value_named():
    cfg = _cfg(gamma=1.5)
    with pytest.raises(ConfigError, match="gamma"):
        validate_config(cfg)
    cfg = _cfg(source={"kind": "ftp"})
    with pytest.raises(ConfigError, match="ftp"):
        validate_config(cfg)


def test_unknown_task_suggests(umaze_config):
    config = load_config(umaze_config)
    with pytest.raises(ConfigError, match="Did you mean: umaze"):
        get_task(config, "umaz")


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_shipped_configs_validate():
    from tests.conftest import REPO

    for path in [
        REPO / "config" / "config.yaml",
        REPO / "config" / "paper.yaml",
        REPO / ".test" / "config" / "config.yaml",
    ]:
        if path.exists():
            load_config(path)
        else:
            pytest.fail(f"{path} is missing")


def test_check_config_names_file_line_and_column_of_a_yaml_error(tmp_path: Path, caplog) -> None:
    """Snakemake's own --configfile loader hides where a YAML error is; `calql check-config` says."""
    from calql.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\ntasks:\n  a: [1, 2\n  b: 3\n")
    with caplog.at_level(logging.ERROR):
        assert main(["check-config", str(bad)]) == 2
    assert f"{bad}, line 4, column 4: not valid YAML" in caplog.text


def test_check_config_prints_the_effective_budgets(capsys, tmp_path: Path, monkeypatch) -> None:
    from calql.cli import main
    from tests.test_workflow import place_local_sources

    # Where the Adroit files the user places by hand are (check-config checks that they exist).
    monkeypatch.chdir(tmp_path)
    place_local_sources(tmp_path, REPO / "config" / "paper.yaml")
    assert main(["check-config", str(REPO / "config" / "paper.yaml")]) == 0
    out = capsys.readouterr().out
    assert "config/paper.yaml: valid" in out
    # The paper's AntMaze budget, not a merged default's (issue 12.1).
    antmaze = [line for line in out.splitlines() if "antmaze" in line and " calql " in line]
    assert antmaze and all("1,000,000 offline steps" in line for line in antmaze), out


def test_check_config_names_the_file_of_a_schema_error(tmp_path: Path, caplog) -> None:
    from calql.cli import main

    bad = tmp_path / "typo.yaml"
    config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    config["seedz"] = config.pop("seeds")
    bad.write_text(yaml.safe_dump(config))
    with caplog.at_level(logging.ERROR):
        assert main(["check-config", str(bad)]) == 2
    assert str(bad) in caplog.text and "seedz" in caplog.text
