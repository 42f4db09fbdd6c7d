"""The workflow through a real Slurm cluster: the .test config with workflow/profiles/slurm.

Starts a one-node cluster on this machine (tests/slurm_cluster.py installs Slurm with apt-get when
it is missing). If the cluster cannot be installed or started the test FAILS with the reason - it
never skips. Needs root and the machine-wide Slurm ports, so one such test at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.slurm_cluster import MARKER, SlurmCluster, SlurmUnavailable

REPO = Path(__file__).resolve().parent.parent
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"
PROFILE = REPO / "workflow" / "profiles" / "slurm"
#: Hard limit of the Snakemake run (the plugin can hang on status queries; `timeout -k` ends it).
RUN_TIMEOUT_S = 1500


def _slurm_run(workdir: Path) -> subprocess.CompletedProcess:
    """The README's cluster command, with the overrides this one-node test cluster needs."""
    cmd = [
        "timeout", "-k", "20", str(RUN_TIMEOUT_S),
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "workflow" / "Snakefile"),
        "--workflow-profile", str(PROFILE),
        "--directory", str(workdir),
        # The test cluster has no accounting database: sacct fails, so ask squeue; poll early.
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "2",
        # Its only partition is `debug`; the profile's placeholders are for real sites.
        "--default-resources", "slurm_partition=debug",
        "--set-resources", "pretrain:slurm_partition=debug", "finetune:slurm_partition=debug",
        "--jobs", "4", "--retries", "0",
        "all",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False, timeout=RUN_TIMEOUT_S + 60)


@pytest.mark.slow
def test_test_config_through_slurm(tmp_path: Path) -> None:
    workdir = tmp_path / "wf"
    (workdir / "config").mkdir(parents=True)
    shutil.copy(TEST_CONFIG, workdir / "config" / "config.yaml")
    cluster = SlurmCluster(tmp_path / MARKER)
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        pytest.fail(f"could not start the local Slurm test cluster: {exc}")
    try:
        start = time.perf_counter()
        result = _slurm_run(workdir)
        wall = time.perf_counter() - start
    finally:
        cluster.stop()
    print(f"\n.test workflow through Slurm: {wall:.0f} s wall")
    assert result.returncode == 0, result.stdout[-8000:]
    out = result.stdout
    assert "Job stats" in out
    # Jobs really went through sbatch (the plugin reports each submission), local ones did not.
    assert out.count("Job ") and "SLURM" in out.upper()
    submitted = [line for line in out.splitlines() if "has been submitted with SLURM jobid" in line]
    config = yaml.safe_load(TEST_CONFIG.read_text())
    n_pre = len([m for m in config["methods"] if m != "sac"]) * len(config["seeds"]) * len(config["tasks"])
    n_fine = len(config["methods"]) * len(config["seeds"]) * len(config["tasks"])
    assert len(submitted) == 2 * len(config["tasks"]) + n_pre + n_fine, submitted
    results = workdir / config["results_dir"]
    for task in config["tasks"]:
        for method in config["methods"]:
            for seed in config["seeds"]:
                run = results / "runs" / task / method / f"seed{seed}" / "finetune"
                assert (run / "run.json").is_file() and (run / "metrics.csv").is_file()
    assert (results / "summary" / "scores.csv").is_file()
    assert (results / "mlflow" / "imported.json").is_file()
    assert list((workdir / "logs" / "slurm").rglob("*.log")), "no Slurm job logs kept"
