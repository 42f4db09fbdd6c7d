"""Issue 20.2: every way one of our HDF5 files can be damaged (its header, superblock, B-trees and
heaps, any array, the JSON metadata attribute) ends as mid-file damage always did: a DatasetError
naming the file, the file moved aside, and the next run rebuilding it. Before, damage at offset 512
or 1024 raised a bare ``RuntimeError`` from h5py (no file named, nothing moved, the same on every
rerun) and a damaged attribute a bare ``JSONDecodeError``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from calql.data.damage import load_or_set_aside
from calql.data.format import load_dataset, read_meta, save_dataset
from calql.errors import DatasetError, describe
from tests.test_dataset_format import tiny
from tests.test_workflow import job_counts, snakemake

#: Where the damage goes: fixed offsets in the header and metadata area, fractions of the file
#: (arrays), and the metadata attribute's JSON text.
WHERE = ("0", "512", "1024", "2048", "1/4", "1/2", "3/4", "attribute")


def damage(path: Path, where: str, n_bytes: int = 256) -> None:
    """Overwrite bytes of ``path`` in place, keeping its time stamps (silent damage, as bit rot
    or a partial copy: Snakemake does not see it)."""
    stamp = path.stat()
    data = bytearray(path.read_bytes())
    if where == "attribute":  # the start of the JSON text: not JSON any more
        offset, n_bytes = data.index(b'{"'), 2
        patch = b"\xff\xfe"
    else:
        offset = len(data) * int(where[0]) // int(where[2]) if "/" in where else int(where)
        patch = np.random.default_rng(offset).bytes(n_bytes)
    data[offset : offset + n_bytes] = patch
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))


@pytest.mark.parametrize("labeled", [False, True], ids=["raw", "labeled"])
@pytest.mark.parametrize("where", WHERE)
def test_any_damage_is_a_dataset_error_naming_the_file(tmp_path: Path, where: str, labeled: bool) -> None:
    path = tmp_path / "task.hdf5"
    save_dataset(tiny(3000, labeled=labeled), path)
    damage(path, where)
    with pytest.raises(DatasetError, match=str(path)):
        load_dataset(path)
    if where in ("0", "attribute"):  # the superblock and the metadata itself
        with pytest.raises(DatasetError, match=str(path)):
            read_meta(path)


def test_a_damaged_file_is_moved_aside_with_advice_that_fits(tmp_path: Path) -> None:
    path = tmp_path / "labeled" / "umaze.hdf5"
    path.parent.mkdir()
    save_dataset(tiny(3000, labeled=True), path)
    damage(path, "1024")
    with pytest.raises(DatasetError) as err:
        load_or_set_aside(path, "umaze", "label")
    aside = list(path.parent.glob("umaze.hdf5.corrupt-*"))
    assert not path.exists() and len(aside) == 1
    text = str(err.value)
    assert f"Moved it aside to {aside[0]}" in text and "RuntimeError" in text, text
    # Issue 20.4: no advice to delete a file that was moved; the rebuild command of its rule
    assert "delete" not in text and "calql label --config <config> --task umaze" in text, text
    # a second job finds it gone and says where it went
    with pytest.raises(DatasetError, match="another job moved it aside as corrupt"):
        load_or_set_aside(path, "umaze", "label")


def test_raw_files_name_the_dataset_rule(tmp_path: Path) -> None:
    path = tmp_path / "umaze.hdf5"
    save_dataset(tiny(100), path)
    damage(path, "0")
    with pytest.raises(DatasetError, match="its `dataset` job regenerates or downloads the file"):
        load_or_set_aside(path, "umaze", "dataset")


def test_an_error_without_a_message_still_has_a_reason() -> None:
    """Issue 20.4: a garbage checkpoint can raise ``MemoryError()`` inside ``torch.load`` (its
    message is empty), and the moved-aside message ended in ``...checkpoint?): ; moved it aside``."""
    assert describe(MemoryError()) == "MemoryError"
    assert describe(EOFError("Ran out of input")) == "EOFError: Ran out of input"


def test_unreadable_checkpoint_message_names_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from calql.errors import CheckpointError
    from calql.training.checkpoint import load_checkpoint

    path = tmp_path / "last.pt"
    path.write_bytes(b"x" * 100)

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError()

    monkeypatch.setattr(torch, "load", out_of_memory)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value).endswith("calql checkpoint?): MemoryError"), str(err.value)


# --- through the workflow ----------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
TASK = "pointmaze-tiny"


def _snakemake(workdir: Path, *args: str):  # noqa: ANN202 - CompletedProcess
    return snakemake("--directory", str(workdir), "--cores", "1", *args, timeout=600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .test task, one method and seed, pre-trained for a few steps: a raw and a labeled file."""
    workdir = tmp_path_factory.mktemp("damage")
    config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    config.update(methods=["iql"], seeds=[0])
    config["train"]["pretrain"].update(steps=10, eval_every=10, eval_episodes=1, checkpoint_every=10)
    (workdir / "config").mkdir()
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    result = _snakemake(workdir, _pretrain_target())
    assert result.returncode == 0, result.stdout[-4000:]
    return workdir


def _pretrain_target() -> str:
    return f"results/runs/{TASK}/iql/seed0/pretrain/run.json"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["raw", "labeled"])
def test_damage_anywhere_is_moved_aside_and_rebuilt_by_the_workflow(tiny_run: Path, tmp_path: Path, kind: str) -> None:
    """For each place in WHERE: damage the file (time stamp kept), run the job that reads it
    (``label`` for the raw file, ``pretrain`` for the labeled one): it fails with a DatasetError
    naming the file and moves the file aside; the next, unchanged command rebuilds it and
    succeeds, with no file removed by hand."""
    folder, rule, reader = {
        "raw": ("datasets", "dataset", "label"),
        "labeled": ("labeled", "label", "pretrain"),
    }[kind]
    for where in WHERE:
        workdir = tmp_path / where.replace("/", "_")
        shutil.copytree(tiny_run, workdir, symlinks=True)
        path = workdir / "results" / folder / f"{TASK}.hdf5"
        original = load_dataset(path)
        damage(path, where)
        target = f"results/labeled/{TASK}.hdf5" if kind == "raw" else _pretrain_target()
        result = _snakemake(workdir, target, "--forcerun", reader)
        logs = [p for p in (workdir / "logs").rglob("*.log") if reader in p.relative_to(workdir / "logs").parts]
        log = logs[0].read_text() if result.returncode and logs else ""
        assert result.returncode != 0, f"{where}: the damage went unnoticed\n{result.stdout[-2000:]}"
        # one clear line naming the file (the CLI prints a DatasetError without a traceback)
        assert (
            f"dataset file {path.relative_to(workdir)}" in log
            or f"{path.relative_to(workdir)} is corrupted" in log
            or f"{path.relative_to(workdir)}: " in log
        ), (where, log[-2000:])
        assert "Moved it aside to" in log and "Traceback" not in log, (where, log[-2000:])
        assert not path.exists() and list(path.parent.glob(f"{TASK}.hdf5.corrupt-*")), where
        # the same command again (without --forcerun): the missing file is rebuilt
        result = _snakemake(workdir, target)
        assert result.returncode == 0, (where, result.stdout[-3000:])
        assert job_counts(result.stdout)[rule] == 1, (where, result.stdout[-3000:])
        rebuilt = load_dataset(path)
        for key, array in original.arrays().items():  # the same data as before the damage
            np.testing.assert_array_equal(getattr(rebuilt, key), array, err_msg=f"{where}: {key}")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
