"""A run stopped at any point and restarted with the same command ends with exactly the same numbers."""

from __future__ import annotations

import copy
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from calql.config import load_config
from calql.errors import CheckpointError
from calql.training.checkpoint import load_checkpoint
from calql.training.phase import StopRequested
from calql.training.run_spec import RunSpec
from tests.test_training import TINY_TRAIN, labeled_dataset, make_config, metrics_without_timing  # noqa: F401


def _same_agent(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a)["agent"], load_checkpoint(b)["agent"]
    for name, module in sa["modules"].items():
        for key, tensor in module.items():
            assert torch.equal(tensor, sb["modules"][name][key]), f"{name}.{key} differs"
    for name, tensor in sa["tensors"].items():
        assert torch.equal(tensor, sb["tensors"][name]), name


@pytest.mark.parametrize("method", ["calql", "iql", "awac"])
def test_pretrain_and_finetune_resume_exactly(tmp_path: Path, labeled_dataset: Path, method: str) -> None:
    from calql.training.finetune import run_finetune
    from calql.training.pretrain import run_pretrain

    cfg = load_config(make_config(tmp_path))
    if method == "awac":  # its pooled FIFO (2,000 offline rows) starts evicting offline rows at env step 151
        cfg["train"]["per_task"] = {"umaze": {"finetune": {"buffer_size": 2150}}}
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    run_pretrain(RunSpec.from_config(cfg, "umaze", method), 3, labeled_dataset, ref, progress=False)
    run_finetune(RunSpec.from_config(cfg, "umaze", method), 3, labeled_dataset, ref, progress=False)

    # pre-training stops at step 70: the checkpoint is from step 60, between evaluations (40, 80),
    # so the resumed run must also restore the partial loss sums of steps 41-60
    with pytest.raises(StopRequested):
        run_pretrain(
            RunSpec.from_config(cfg, "umaze", method), 3, labeled_dataset, crash, progress=False, stop_after=70
        )
    assert load_checkpoint(crash / "pretrain/checkpoints/last.pt")["counters"]["grad_step"] == 60
    assert not (crash / "pretrain/final.pt").exists() and not (crash / "pretrain/run.json").exists()
    run_pretrain(RunSpec.from_config(cfg, "umaze", method), 3, labeled_dataset, crash, progress=False)
    assert metrics_without_timing(crash / "pretrain/metrics.csv") == metrics_without_timing(
        ref / "pretrain/metrics.csv"
    )
    _same_agent(crash / "pretrain/final.pt", ref / "pretrain/final.pt")

    with pytest.raises(StopRequested):
        run_finetune(
            RunSpec.from_config(cfg, "umaze", method), 3, labeled_dataset, crash, progress=False, stop_after=250
        )
    state = load_checkpoint(crash / "finetune/checkpoints/last.pt")
    assert 100 <= state["counters"]["env_steps"] < 400 and state["buffer"]["size"] == state["counters"]["env_steps"]
    run_finetune(RunSpec.from_config(cfg, "umaze", method), 3, labeled_dataset, crash, progress=False)
    rows = metrics_without_timing(crash / "finetune/metrics.csv")
    assert rows == metrics_without_timing(ref / "finetune/metrics.csv")
    assert len(rows) >= 3
    _same_agent(crash / "finetune/final.pt", ref / "finetune/final.pt")


@pytest.mark.parametrize("method", ["sac", "hybrid", "rlpd"])
def test_online_only_finetune_resumes_exactly(tmp_path: Path, labeled_dataset: Path, method: str) -> None:
    """Methods without pre-training; RLPD also crosses from its uniform random episodes
    (`random_steps`, 100 in the PointMaze preset) to training, with a UTD above 1."""
    from calql.training.finetune import run_finetune

    cfg = load_config(make_config(tmp_path))
    if method == "rlpd":
        cfg["train"]["overrides"] = {"rlpd": {"actor_update_period": 2}}
        cfg["train"]["finetune"]["utd_ratio"] = 2.0
    run_finetune(RunSpec.from_config(cfg, "umaze", method), 1, labeled_dataset, tmp_path / "ref", progress=False)
    with pytest.raises(StopRequested):
        run_finetune(
            RunSpec.from_config(cfg, "umaze", method),
            1,
            labeled_dataset,
            tmp_path / "crash",
            progress=False,
            stop_after=150,
        )
    run_finetune(RunSpec.from_config(cfg, "umaze", method), 1, labeled_dataset, tmp_path / "crash", progress=False)
    assert metrics_without_timing(tmp_path / "crash/finetune/metrics.csv") == metrics_without_timing(
        tmp_path / "ref/finetune/metrics.csv"
    )
    _same_agent(tmp_path / "crash/finetune/final.pt", tmp_path / "ref/finetune/final.pt")


def test_other_seed_gives_other_numbers(tmp_path: Path, labeled_dataset: Path) -> None:
    from calql.training.pretrain import run_pretrain

    train = copy.deepcopy(TINY_TRAIN)
    train["pretrain"].update(steps=40, eval_every=40)
    cfg = load_config(make_config(tmp_path, train))
    a = run_pretrain(RunSpec.from_config(cfg, "umaze", "cql"), 0, labeled_dataset, tmp_path / "a", progress=False)
    b = run_pretrain(RunSpec.from_config(cfg, "umaze", "cql"), 1, labeled_dataset, tmp_path / "b", progress=False)
    ra, rb = metrics_without_timing(a / "metrics.csv"), metrics_without_timing(b / "metrics.csv")
    assert ra[-1]["train/critic_loss"] != rb[-1]["train/critic_loss"]


def test_checkpoint_of_another_run_is_refused(tmp_path: Path, labeled_dataset: Path) -> None:
    """A checkpoint naming another method means a wrong run folder: refused, nothing moved."""
    from calql.training.pretrain import run_pretrain

    cfg = load_config(make_config(tmp_path))
    for method in ("cql", "calql"):
        with pytest.raises(StopRequested):
            run_pretrain(
                RunSpec.from_config(cfg, "umaze", method),
                0,
                labeled_dataset,
                tmp_path / method,
                progress=False,
                stop_after=35,
            )
    ckpt = tmp_path / "calql/pretrain/checkpoints/last.pt"
    os.replace(tmp_path / "cql/pretrain/checkpoints/last.pt", ckpt)
    with pytest.raises(CheckpointError, match="method: checkpoint has 'cql', this run has 'calql'"):
        run_pretrain(RunSpec.from_config(cfg, "umaze", "calql"), 0, labeled_dataset, tmp_path / "calql", progress=False)
    assert ckpt.exists()


def test_checkpoint_of_another_config_is_set_aside(
    tmp_path: Path, labeled_dataset: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12.3: after a deliberate config edit the rerun starts over with a warning (it used to
    fail until the checkpoint was deleted by hand) and ends as a fresh run of the new config."""
    from calql.training.pretrain import run_pretrain

    cfg = load_config(make_config(tmp_path))
    with pytest.raises(StopRequested):
        run_pretrain(
            RunSpec.from_config(cfg, "umaze", "cql"),
            0,
            labeled_dataset,
            tmp_path / "run",
            progress=False,
            stop_after=70,
        )
    changed = copy.deepcopy(cfg)
    changed["train"]["overrides"] = {"cql": {"cql_min_q_weight": 1.0}}
    run_pretrain(RunSpec.from_config(changed, "umaze", "cql"), 0, labeled_dataset, tmp_path / "run", progress=False)
    assert "another config" in caplog.text and "starts over" in caplog.text
    kept = sorted(p.name for p in (tmp_path / "run/pretrain/checkpoints").iterdir())
    assert [n.split("-")[0] for n in kept] == ["last.pt.other", "prev.pt.other"], kept
    ref = run_pretrain(
        RunSpec.from_config(changed, "umaze", "cql"), 0, labeled_dataset, tmp_path / "ref", progress=False
    )
    assert metrics_without_timing(tmp_path / "run/pretrain/metrics.csv") == metrics_without_timing(ref / "metrics.csv")


def test_unreadable_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, labeled_dataset: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12.3: a corrupt last.pt (it failed every rerun with 'could not find MARK') is set
    aside; the phase resumes from prev.pt, or from scratch when that is unreadable too, and ends
    with exactly the numbers of an uninterrupted run."""
    from calql.training.pretrain import run_pretrain

    caplog.set_level(logging.INFO, logger="calql")
    cfg = load_config(make_config(tmp_path))
    ref = run_pretrain(RunSpec.from_config(cfg, "umaze", "iql"), 0, labeled_dataset, tmp_path / "ref", progress=False)
    for corrupt in (("last.pt",), ("last.pt", "prev.pt")):
        run = tmp_path / "-".join(corrupt)
        with pytest.raises(StopRequested):
            run_pretrain(
                RunSpec.from_config(cfg, "umaze", "iql"), 0, labeled_dataset, run, progress=False, stop_after=70
            )
        ckpts = run / "pretrain/checkpoints"
        assert load_checkpoint(ckpts / "prev.pt")["counters"]["grad_step"] == 30
        for name in corrupt:
            (ckpts / name).write_bytes(b"garbage")
        caplog.clear()
        run_pretrain(RunSpec.from_config(cfg, "umaze", "iql"), 0, labeled_dataset, run, progress=False)
        assert caplog.text.count("cannot read checkpoint") == len(corrupt), caplog.text
        assert ("resuming pretrain from" in caplog.text) == (len(corrupt) == 1)
        assert len(list(ckpts.glob("*.unreadable-*"))) == len(corrupt)
        assert metrics_without_timing(run / "pretrain/metrics.csv") == metrics_without_timing(ref / "metrics.csv")
        _same_agent(run / "pretrain/final.pt", ref / "final.pt")


#: Runs `calql` (argv after the snippet) with one hook that sends a real signal to the process
#: at a fixed point, so the tests below never depend on timing: KILL_AT_CHECKPOINT=k sends
#: SIGKILL right after the k-th checkpoints/last.pt is written; TERM_AT_UPDATE=n sends SIGTERM
#: during gradient step n (the CLI's handler then checkpoints and stops).
_CLI_WITH_SIGNAL = """
import os, signal, sys
import calql.training.checkpoint as checkpoint
kill_at, term_at = int(os.environ.get("KILL_AT_CHECKPOINT", 0)), int(os.environ.get("TERM_AT_UPDATE", 0))
save, saved = checkpoint.save_checkpoint, []
def save_then_kill(path, state):
    save(path, state)
    saved.append(path)
    if path.name == "last.pt" and len([p for p in saved if p.name == "last.pt"]) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save_checkpoint = save_then_kill  # before calql.cli imports the training modules
from calql.agents.sac import SACAgent
update = SACAgent.update
def update_then_term(self, batch):
    metrics = update(self, batch)
    if self.num_updates == term_at:
        os.kill(os.getpid(), signal.SIGTERM)
    return metrics
SACAgent.update = update_then_term
from calql.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(args: list[str], **hook: int) -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-c", _CLI_WITH_SIGNAL, *args], {**os.environ, **{k: str(v) for k, v in hook.items()}}


def test_cli_killed_with_sigkill_resumes_exactly(tmp_path: Path, labeled_dataset: Path) -> None:
    """The real thing: `calql pretrain` killed with SIGKILL after its second checkpoint, then rerun."""
    from calql.training.pretrain import run_pretrain

    train = copy.deepcopy(TINY_TRAIN)
    train["pretrain"].update(steps=300, eval_every=100, checkpoint_every=100)
    cfg_path = make_config(tmp_path, train)
    run_dir = tmp_path / "killed"
    args = [
        "-q",
        "pretrain",
        "--config",
        str(cfg_path),
        "--task",
        "umaze",
        "--method",
        "iql",
        "--seed",
        "5",
        "--dataset",
        str(labeled_dataset),
        "--run-dir",
        str(run_dir),
    ]
    cmd, env = _cli(args, KILL_AT_CHECKPOINT=2)
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(run_dir / "pretrain/checkpoints/last.pt")["counters"]["grad_step"] == 200
    assert (run_dir / "pretrain/checkpoints/prev.pt").exists() and not (run_dir / "pretrain/run.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # no hook: runs to the end
    assert done.returncode == 0, done.stderr
    assert not list(run_dir.glob("**/*.tmp-*")), "a killed job's temporary files were left behind"
    ref = run_pretrain(
        RunSpec.from_config(load_config(cfg_path), "umaze", "iql"), 5, labeled_dataset, tmp_path / "ref", progress=False
    )
    assert metrics_without_timing(run_dir / "pretrain/metrics.csv") == metrics_without_timing(ref / "metrics.csv")
    _same_agent(run_dir / "pretrain/final.pt", ref / "final.pt")


def test_cli_sigterm_checkpoints_mid_burst_and_resumes_exactly(tmp_path: Path, labeled_dataset: Path) -> None:
    """Slurm's time limit sends SIGTERM: the job checkpoints between two gradient steps and exits."""
    from calql.training.finetune import run_finetune

    train = copy.deepcopy(TINY_TRAIN)
    train["finetune"].update(env_steps=1000, checkpoint_every_env_steps=100000, checkpoint_minutes=1000.0)
    cfg_path = make_config(tmp_path, train)
    run_dir = tmp_path / "termed"
    args = [
        "finetune",
        "--config",
        str(cfg_path),
        "--task",
        "umaze",
        "--method",
        "sac",
        "--seed",
        "2",
        "--dataset",
        str(labeled_dataset),
        "--run-dir",
        str(run_dir),
    ]
    cmd, env = _cli(args, TERM_AT_UPDATE=333)
    termed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert termed.returncode == 2 and "SIGTERM" in termed.stderr and "rerun the same command" in termed.stderr
    counters = load_checkpoint(run_dir / "finetune/checkpoints/last.pt")["counters"]
    # stopped inside an episode's gradient steps, before that episode's evaluation/checkpoint work
    assert counters["grad_step"] == 333 and not counters["boundary_done"], counters
    assert not (run_dir / "finetune/final.pt").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # no hook: runs to the end
    assert done.returncode == 0, done.stderr
    ref = run_finetune(
        RunSpec.from_config(load_config(cfg_path), "umaze", "sac"), 2, labeled_dataset, tmp_path / "ref", progress=False
    )
    resumed, expected = (
        metrics_without_timing(run_dir / "finetune/metrics.csv"),
        metrics_without_timing(ref / "metrics.csv"),
    )
    assert resumed == expected, (counters, [(a, b) for a, b in zip(resumed, expected) if a != b])
    _same_agent(run_dir / "finetune/final.pt", ref / "final.pt")
