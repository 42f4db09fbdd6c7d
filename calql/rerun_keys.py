"""Rerun keys: for each workflow step, a hash of exactly the settings its output depends on.

The workflow passes each key as a rule param; Snakemake reruns a job when its key changes (rerun
trigger "params") and not when an unrelated setting changes: the fine-tuning budget does not
touch pre-training, `experiment`, `tracking`, `analysis` and `resources` touch no run, training
settings touch no dataset. Kept here, not in the Snakefile, so that tests can check them.
"""

from __future__ import annotations

import json
from typing import Any

from calql.run_files.hashing import digest, phase_hash


def data_key(config: dict[str, Any], task: str) -> str:
    """What the raw dataset depends on: the task's domain, environment and source."""
    spec = config["tasks"][task]
    return digest({k: spec.get(k) for k in ("domain", "env", "source")})


def label_key(config: dict[str, Any], task: str) -> str:
    """What the labels depend on beyond the dataset file: reward transform, discount, preprocessing."""
    spec = config["tasks"][task]
    return digest({k: spec.get(k) for k in ("reward", "gamma", "env", "preprocess")})


def train_key(config: dict[str, Any], run: dict[str, Any], phase: str) -> str:
    """What a training phase depends on: the task's environment plus that phase's run config
    (``run`` is the resolved config of the task x method, `calql.training.resolve.resolve_all`)."""
    spec = config["tasks"][run["task"]]
    return digest({"env": spec["env"], "domain": spec["domain"], "run": phase_hash(run, phase)})


def track_key(config: dict[str, Any]) -> str:
    """What the MLflow import depends on beyond the run files: the tracking settings and the
    experiment the runs are filed under. (Plain sorted JSON, not a digest: the key Snakemake
    recorded for existing imports before this function existed, so they stay up to date.)"""
    return json.dumps({**config.get("tracking", {}), "experiment": config["experiment"]}, sort_keys=True)


def analysis_key(config: dict[str, Any]) -> str:
    """What the analysis rules depend on beyond the run files: the `analysis` section."""
    return digest(config.get("analysis", {}))
