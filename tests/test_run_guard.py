"""Issue 12.3/12.4: one writer per run folder, failure records, and a corrupt labeled dataset that
is set aside (so the workflow relabels it) instead of failing every training job forever."""

from __future__ import annotations

import copy
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import pytest

from calql.run_files import ERROR_JSON
from calql.training.guard import LOCK_NAME, failure_record, read_failure
from tests.test_training import TINY_TRAIN, labeled_dataset, make_config  # noqa: F401


def phase_cmd(phase: str, cfg: Path, dataset: Path, run_dir: Path, *extra: str) -> list[str]:
    """`calql <phase>` for IQL seed 0 on the tiny U-maze task."""
    return [
        sys.executable,
        "-m",
        "calql.cli",
        phase,
        "--config",
        str(cfg),
        "--task",
        "umaze",
        "--method",
        "iql",
        "--seed",
        "0",
        "--dataset",
        str(dataset),
        "--run-dir",
        str(run_dir),
        *extra,
    ]


def pretrain_cmd(cfg: Path, dataset: Path, run_dir: Path, *extra: str) -> list[str]:
    return phase_cmd("pretrain", cfg, dataset, run_dir, *extra)


def wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"process exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_second_process_for_the_same_run_names_the_holder_or_waits(tmp_path: Path, labeled_dataset: Path) -> None:
    """Issue 12.4: while one `calql pretrain` trains a run, another for the same run exits naming
    the holder's PID (with --lock-wait 0) or waits; after the holder is SIGKILLed (as an orphan
    would be), the waiting one gets the lock at once, resumes and finishes."""
    train = copy.deepcopy(TINY_TRAIN)
    train["pretrain"].update(steps=100000, eval_every=50000, checkpoint_every=20)
    cfg = make_config(tmp_path, train)
    run_dir = tmp_path / "run"
    cmd = pretrain_cmd(cfg, labeled_dataset, run_dir)
    holder = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (run_dir / "pretrain/checkpoints/last.pt").exists(), holder, "the first checkpoint")
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == holder.pid
        refused = subprocess.run([*cmd, "--lock-wait", "0"], capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2
        assert f"PID {holder.pid}" in refused.stderr and "being trained by" in refused.stderr, refused.stderr

        # the waiter asks for a short budget (another config): once it has the lock it sets the
        # holder's checkpoint aside and finishes quickly
        short = copy.deepcopy(train)
        short["pretrain"].update(steps=60, eval_every=30)
        (tmp_path / "short").mkdir()
        waiter = subprocess.Popen(
            pretrain_cmd(make_config(tmp_path / "short", short), labeled_dataset, run_dir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(waiter.stderr), daemon=True)
        reader.start()
        wait_for(lambda: any("waiting for it to finish" in line for line in lines), waiter, "the waiting message")
        assert f"being trained by PID {holder.pid}" in "".join(lines)
        assert not (run_dir / "pretrain/run.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert waiter.wait(timeout=300) == 0, "".join(lines)
    reader.join(timeout=10)
    assert json.loads((run_dir / "pretrain/run.json").read_text())["status"] == "complete"


def test_failure_record_names_the_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with failure_record(tmp_path):
            raise RuntimeError("boom")
    assert read_failure(tmp_path).startswith("RuntimeError: boom")
    with failure_record(tmp_path):
        assert not (tmp_path / ERROR_JSON).exists(), "an old failure record must go when the phase restarts"
    assert read_failure(tmp_path) is None


def test_corrupt_labeled_dataset_is_set_aside_with_the_rebuild_command(tmp_path: Path, labeled_dataset: Path) -> None:
    """Issue 12.3: a labeled dataset corrupted after labeling used to fail every training job, and
    the workflow never relabeled it (the file still existed). Now the job names the file and the
    commands that rebuild it and moves it aside, so the next `snakemake` relabels it."""
    data = tmp_path / "labeled" / "umaze.hdf5"
    data.parent.mkdir()
    shutil.copy(labeled_dataset, data)
    with h5py.File(data, "r+") as f:  # still a readable HDF5 file, but not the recorded arrays
        f["rewards"][0] = f["rewards"][0] + 1.0
    run_dir = tmp_path / "run"
    res = subprocess.run(
        pretrain_cmd(make_config(tmp_path), data, run_dir), capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 2
    aside = list(data.parent.glob("umaze.hdf5.corrupt-*"))
    assert not data.exists() and len(aside) == 1
    for text in (
        str(data),
        "corrupted",
        f"Moved it aside to {aside[0]}",
        "snakemake",
        f"calql label --config <config> --task umaze --dataset <raw dataset> --out {data}",
    ):
        assert text in res.stderr, (text, res.stderr)
    assert "DatasetError" in read_failure(run_dir / "pretrain")
    # a second job of the same task says where the file went
    res = subprocess.run(
        pretrain_cmd(make_config(tmp_path), data, tmp_path / "run2"), capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 2 and "moved it aside as corrupt" in res.stderr, res.stderr


def test_unreadable_pretrained_checkpoint_is_set_aside_so_the_workflow_rebuilds_it(
    tmp_path: Path, labeled_dataset: Path
) -> None:
    """Issue 12.3: a corrupted pretrain/final.pt failed every fine-tuning rerun, and Snakemake never
    rebuilt it (the file existed). Now the fine-tuning job moves it and the phase's run.json aside
    (kept), so the pre-training output is missing and the next run rebuilds it; no file is deleted
    by hand. The rebuilt checkpoint is the original one, bit for bit (a deterministic re-run)."""
    cfg = make_config(tmp_path)
    run_dir = tmp_path / "run"
    assert subprocess.run(pretrain_cmd(cfg, labeled_dataset, run_dir), capture_output=True, timeout=300).returncode == 0
    final = run_dir / "pretrain" / "final.pt"
    original = final.read_bytes()
    final.write_bytes(original[: len(original) // 2])  # truncated, as by a full disk
    finetune = phase_cmd("finetune", cfg, labeled_dataset, run_dir)
    res = subprocess.run(finetune, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    aside = list(final.parent.glob("final.pt.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == original[: len(original) // 2]
    assert not final.exists() and not (run_dir / "pretrain" / "run.json").exists()
    assert list(final.parent.glob("run.json.unreadable-final-*"))
    for text in (str(final), f"Moved it aside to {aside[0]}", "snakemake", "pretrain job rebuilds it"):
        assert text in res.stderr, (text, res.stderr)
    # what the workflow's rerun does: pre-training (its outputs are missing), then fine-tuning
    assert subprocess.run(pretrain_cmd(cfg, labeled_dataset, run_dir), capture_output=True, timeout=300).returncode == 0
    assert final.read_bytes() == original
    res = subprocess.run(finetune, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
