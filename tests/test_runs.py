"""The run-folder layout (calql.run_files.RunKey) that the workflow, tracking and analysis share."""

from pathlib import Path

from calql.run_files import RunKey, runs_dir_of
from calql.tracking.store import run_key


def test_run_key_names_parses_and_finds_run_folders(tmp_path: Path) -> None:
    key = RunKey("maze-a", "calql", 3)
    assert key.name == "maze-a/calql/seed3" == run_key("maze-a", "calql", 3)
    assert key.dir(tmp_path) == tmp_path / "maze-a" / "calql" / "seed3"
    assert RunKey.parse(key.name) == key
    assert RunKey.parse("maze-a/calql/seedx") is None and RunKey.parse("maze-a/seed1") is None
    assert runs_dir_of("results/") == "results/runs"
    for k in (key, RunKey("maze-a", "sac", 0), RunKey("b", "iql", 10)):
        k.dir(tmp_path).mkdir(parents=True)
    (tmp_path / "maze-a" / "calql" / "notes").mkdir()  # not a seed folder
    (tmp_path / "b" / "iql" / "seed2").write_text("a file, not a run folder")
    assert RunKey.existing(tmp_path) == [RunKey("b", "iql", 10), key, RunKey("maze-a", "sac", 0)]
    assert RunKey.existing(tmp_path / "absent") == []
