"""Run records: metrics.csv round trip, `calql track` import (idempotent), live logging that only warns."""

from __future__ import annotations

import copy
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest

from calql.config import load_config
from calql.run_files.metrics_csv import BASE_COLUMNS, TIMING_COLUMNS, columns_of, read_metrics, write_metrics
from calql.training.run_spec import RunSpec
from tests.test_training import TINY_TRAIN, labeled_dataset, make_config  # noqa: F401


def test_metrics_csv_round_trip_is_exact(tmp_path: Path) -> None:
    rows = [
        {
            "task": "t",
            "method": "calql",
            "seed": 0,
            "phase": "pretrain",
            "grad_step": 0,
            "env_steps": 0,
            "score": 0.1 + 0.2,
            "success_rate": 1 / 3,
            "return_mean": -1e-300,
            "q_policy": float("nan"),
            "mc_return": -500.0,
            "q_data": 1e300,
            "wall_time_s": 0.5,
        },
        {
            "task": "t",
            "method": "calql",
            "seed": 0,
            "phase": "pretrain",
            "grad_step": 10,
            "env_steps": 0,
            "train/critic_loss": 2.0 / 7,
            "perf/grad_steps_per_s": 3.0,
        },
    ]
    write_metrics(tmp_path / "m.csv", rows)
    back = read_metrics(tmp_path / "m.csv")
    cols = list(back[0])
    assert cols == [*BASE_COLUMNS, "train/critic_loss", *TIMING_COLUMNS] == columns_of(rows)
    assert back[0]["score"] == 0.1 + 0.2 and back[0]["success_rate"] == 1 / 3 and back[0]["q_data"] == 1e300
    assert back[0]["q_policy"] is None and back[0]["train/critic_loss"] is None  # NaN / missing -> empty
    assert back[1]["train/critic_loss"] == 2.0 / 7 and back[1]["grad_step"] == 10
    with pytest.raises(ValueError, match="bogus"):
        write_metrics(tmp_path / "bad.csv", [{"bogus": 1}])


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory: pytest.TempPathFactory, labeled_dataset: Path) -> tuple[Path, Path]:
    """Two real tiny runs: iql seed 0 (pretrain + finetune) and sac seed 0 (finetune)."""
    from calql.training.finetune import run_finetune
    from calql.training.pretrain import run_pretrain

    root = tmp_path_factory.mktemp("track")
    train = copy.deepcopy(TINY_TRAIN)
    train["pretrain"].update(steps=20, eval_every=10)
    train["finetune"].update(env_steps=100, eval_every_env_steps=50)
    cfg_path = make_config(root, train)
    cfg = load_config(cfg_path)
    runs = root / "results" / "runs"
    run_pretrain(RunSpec.from_config(cfg, "umaze", "iql"), 0, labeled_dataset, runs / "umaze/iql/seed0", progress=False)
    run_finetune(RunSpec.from_config(cfg, "umaze", "sac"), 0, labeled_dataset, runs / "umaze/sac/seed0", progress=False)
    return cfg_path, runs


def _active_runs(uri: str, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=100)


def test_track_imports_once_and_updates(finished_runs: tuple[Path, Path], labeled_dataset: Path) -> None:
    from calql.tracking.mlflow_sync import import_runs

    cfg_path, runs = finished_runs
    cfg = load_config(cfg_path)
    uri = f"sqlite:///{runs.parent / 'mlflow' / 'mlflow.db'}"
    # the CLI, with its default URI (sqlite under results_dir)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "calql.cli",
            "-q",
            "track",
            "--config",
            str(cfg_path),
            "--runs-dir",
            str(runs),
            "--summary",
            str(runs.parent / "track.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    found = {r.data.tags["calql.run_key"]: r for r in _active_runs(uri, "pytest")}
    assert set(found) == {"umaze/iql/seed0", "umaze/sac/seed0"}
    iql = found["umaze/iql/seed0"]
    assert iql.data.tags["phases"] == "pretrain" and iql.data.tags["method"] == "iql"
    assert iql.data.params["agent.expectile"] == "0.9" and iql.data.params["pretrain.steps"] == "20"
    assert iql.info.artifact_uri.startswith((runs.parent / "mlflow" / "artifacts").resolve().as_uri())
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    hist = client.get_metric_history(iql.info.run_id, "pretrain/score")
    assert [m.step for m in hist] == [0, 10, 20]
    csv_rows = read_metrics(runs / "umaze/iql/seed0/pretrain/metrics.csv")
    assert [m.value for m in hist] == [r["score"] for r in csv_rows]
    sac_hist = client.get_metric_history(found["umaze/sac/seed0"].info.run_id, "finetune/return_mean")
    assert [m.step for m in sac_hist] == [
        r["env_steps"] for r in read_metrics(runs / "umaze/sac/seed0/finetune/metrics.csv")
    ]
    arts = {a.path for a in client.list_artifacts(iql.info.run_id, "pretrain")}
    assert arts == {"pretrain/metrics.csv", "pretrain/run.json", "pretrain/final.pt"}

    # idempotent: nothing changed -> nothing imported, no duplicates
    summary = import_runs(cfg, runs, uri)
    assert summary["imported"] == [] and len(summary["unchanged"]) == 2
    assert len(_active_runs(uri, "pytest")) == 2

    # a new phase finishes -> that run is replaced (still one run per key), with both phases
    from calql.training.finetune import run_finetune

    run_finetune(RunSpec.from_config(cfg, "umaze", "iql"), 0, labeled_dataset, runs / "umaze/iql/seed0", progress=False)
    summary = import_runs(cfg, runs, uri)
    assert summary["replaced"] == ["umaze/iql/seed0"] and summary["unchanged"] == ["umaze/sac/seed0"]
    active = {r.data.tags["calql.run_key"]: r for r in _active_runs(uri, "pytest")}
    assert len(active) == 2 and active["umaze/iql/seed0"].data.tags["phases"] == "pretrain,finetune"
    assert "finetune/score" in active["umaze/iql/seed0"].data.metrics


def test_imported_run_has_the_training_times_dataset_input_and_grouping_tags(
    tmp_path: Path, finished_runs: tuple[Path, Path]
) -> None:
    """Issue 10: the UI showed the import's duration (68 ms for a 90 s run) and no dataset. An
    imported run now starts when its first phase started and ends when its last phase ended, has
    the labeled dataset as an input (checksum as digest), and tags to group the runs table by."""
    import json

    from mlflow import MlflowClient

    from calql.tracking.mlflow_sync import import_runs

    cfg_path, runs = finished_runs
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    import_runs(load_config(cfg_path), runs, uri, log_checkpoints=False)
    client = MlflowClient(tracking_uri=uri)
    found = {r.data.tags["calql.run_key"]: r for r in _active_runs(uri, "pytest")}
    iql = client.get_run(found["umaze/iql/seed0"].info.run_id)
    # pre-training, and fine-tuning if another test of this module has run it
    phases = [
        d for d in (runs / "umaze/iql/seed0/pretrain", runs / "umaze/iql/seed0/finetune") if (d / "run.json").exists()
    ]
    first, last = phases[0] / "run.json", phases[-1] / "run.json"
    record = json.loads(first.read_text())
    assert iql.info.end_time == int(last.stat().st_mtime * 1000)
    assert iql.info.start_time == int(first.stat().st_mtime * 1000) - int(1000 * record["wall_time_s"])
    assert iql.info.end_time - iql.info.start_time >= 1000 * record["wall_time_s"] - 1
    assert {k: iql.data.tags[k] for k in ("task", "algorithm", "variant", "seed")} == {
        "task": "umaze",
        "algorithm": "iql",
        "variant": "iql",
        "seed": "0",
    }
    (inp,) = iql.inputs.dataset_inputs
    assert inp.dataset.digest == record["dataset"]["checksum"][:32]
    assert json.loads(inp.dataset.profile) == {"sha256": record["dataset"]["checksum"]}
    assert inp.dataset.name == "umaze-labeled"
    assert {t.key: t.value for t in inp.tags} == {"mlflow.data.context": "training"}


def test_live_logging_to_unreachable_server_only_warns(
    finished_runs: tuple[Path, Path], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calql.tracking.mlflow_live import live_logger

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    cfg = load_config(finished_runs[0])
    assert live_logger(cfg, {"task": "umaze", "method": "iql"}, "pretrain", 0) is None  # live off by default
    cfg["tracking"].update(live=True, uri="http://127.0.0.1:9")  # discard port: nothing listens
    with caplog.at_level(logging.WARNING):
        live = live_logger(cfg, {"task": "umaze", "method": "iql"}, "pretrain", 0)
        assert live is not None
        live.log_row({"score": 1.0}, 0)
        live.finish(True)
    assert any("live logging disabled" in r.message for r in caplog.records)


def test_live_logging_to_sqlite(tmp_path: Path, finished_runs: tuple[Path, Path]) -> None:
    from calql.tracking.mlflow_live import live_logger

    cfg = load_config(finished_runs[0])
    uri = f"sqlite:///{tmp_path / 'live.db'}"
    cfg["tracking"].update(live=True, uri=uri)
    live = live_logger(cfg, {"task": "umaze", "method": "iql", "agent": {"beta": 10.0}}, "pretrain", 0)
    live.log_row({"task": "umaze", "grad_step": 5, "score": 50.0, "q_policy": -3.0, "train/x": None}, 5)
    live.finish(True)
    (run,) = _active_runs(uri, "pytest")
    assert run.data.metrics == {"pretrain/score": 50.0, "pretrain/q_policy": -3.0}
    assert run.data.tags["calql.source"] == "live" and run.data.params["agent.beta"] == "10.0"
    assert math.isclose(run.data.metrics["pretrain/score"], 50.0)


# ----------------------------------------------------------------------------- concurrency (issue 12.5)
def _half_initialised_store(path: Path) -> None:
    """What a process killed while creating a store leaves: the initial tables, no migrations."""
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    InitialBase.metadata.create_all(sqlalchemy.create_engine(f"sqlite:///{path}"))


def test_concurrent_track_processes_keep_one_run_per_key(tmp_path: Path, finished_runs: tuple[Path, Path]) -> None:
    """Four `calql track` at once on a fresh, a half-initialised and a full store: all exit 0 and
    the store holds exactly one run per (task, method, seed). They used to crash ("duplicate
    column name", "already exists") or leave duplicates."""
    cfg_path, runs = finished_runs
    fresh, half = tmp_path / "fresh" / "mlflow.db", tmp_path / "half" / "mlflow.db"
    half.parent.mkdir()
    _half_initialised_store(half)
    for db in (fresh, half, fresh):  # the second round on `fresh` finds a full store
        uri = f"sqlite:///{db}"
        cmd = [
            sys.executable,
            "-m",
            "calql.cli",
            "-q",
            "track",
            "--config",
            str(cfg_path),
            "--runs-dir",
            str(runs),
            "--uri",
            uri,
        ]
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        errors = [p.communicate(timeout=600)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
        keys = sorted(r.data.tags["calql.run_key"] for r in _active_runs(uri, "pytest"))
        assert keys == ["umaze/iql/seed0", "umaze/sac/seed0"], (db, keys)


_LIVE_WRITER = """
import json, sys
from calql.tracking.mlflow_live import LiveRun
config, seed, rows = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
live = LiveRun(config, {"task": "umaze", "method": "iql", "agent": {"beta": 10.0}}, "pretrain", seed)
assert live.client is not None, "live logging did not start"
for step in range(rows):
    live.log_row({"score": float(step), "q_policy": -float(step), "train/critic_loss": 1.0 / (step + 1)}, step)
live.finish(True)
assert not live.pending
"""


@pytest.mark.slow
def test_live_logging_from_many_jobs_to_one_server_loses_no_metric(tmp_path: Path) -> None:
    """Six training jobs logging live at once to one `mlflow server` on 127.0.0.1 (a fresh store,
    so they also race to create the experiment): every metric of every row arrives."""
    import json
    import os
    import signal
    import socket
    import time
    import urllib.request

    from mlflow import MlflowClient

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--default-artifact-root",
            (tmp_path / "artifacts").as_uri(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, "mlflow server exited"
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not answer /health"
                time.sleep(0.5)
        config = {"experiment": "live-many", "results_dir": str(tmp_path), "tracking": {"live": True, "uri": uri}}
        rows, seeds = 25, range(6)
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", _LIVE_WRITER, json.dumps(config), str(s), str(rows)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for s in seeds
        ]
        errors = [w.communicate(timeout=600)[1] for w in writers]
        assert [w.returncode for w in writers] == [0] * len(writers), errors
        client = MlflowClient(tracking_uri=uri)
        found = {r.data.tags["calql.run_key"]: r.info.run_id for r in _active_runs(uri, "live-many")}
        assert sorted(found) == [f"umaze/iql/seed{s}" for s in seeds]
        for run_id in found.values():
            for name in ("pretrain/score", "pretrain/q_policy", "pretrain/train/critic_loss"):
                assert sorted(m.step for m in client.get_metric_history(run_id, name)) == list(range(rows)), name
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
