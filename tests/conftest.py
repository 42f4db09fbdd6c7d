"""Shared fixtures: a tiny PointMaze task and its config file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

# One thread per test process: the suite runs on 2-core machines, and numbers must not depend on it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent

UMAZE_TASK = {
    "domain": "pointmaze",
    "env": {
        "id": "PointMaze_UMaze-v3",
        "obs_keys": ["observation"],
        "eval_reset": {"reset_cell": [3, 1], "goal_cell": [1, 1]},
        "max_episode_steps": 300,
    },
    "source": {"kind": "generated", "n_transitions": 3000, "segment_length": 500, "seed": 0},
    "reward": {"scale": 10.0, "bias": -5.0, "sparse": True, "negative_reward": 0.0},
}


def write_config(path: Path, tasks: dict | None = None, **top) -> Path:
    config = {
        "experiment": "pytest",
        "results_dir": str(path.parent / "results"),
        "tasks": tasks or {"umaze": UMAZE_TASK},
        **top,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def umaze_config(tmp_path: Path) -> Path:
    """A config file with one tiny generated PointMaze task named 'umaze'."""
    return write_config(tmp_path / "config.yaml")
