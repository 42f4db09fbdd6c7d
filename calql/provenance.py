"""What produced an output: git commit, package versions, config hash.

Every dataset, checkpoint and metrics file records this so a number can be traced back.
"""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from calql.run_files.hashing import config_hash

#: Packages whose versions change numbers; recorded in every output.
TRACKED_PACKAGES = (
    "calql-repro",
    "torch",
    "numpy",
    "gymnasium",
    "gymnasium-robotics",
    "mujoco",
    "minari",
    "h5py",
    "pandas",
    "mlflow",
    "snakemake",
)


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the source tree this package runs from, '+dirty' when modified, or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance(config: Any | None = None, seed: int | None = None) -> dict[str, Any]:
    """The record stored next to every output."""
    record: dict[str, Any] = {
        "git_commit": git_commit(),
        "packages": package_versions(),
        "platform": platform.platform(),
    }
    if config is not None:
        record["config"] = config
        record["config_hash"] = config_hash(config)
    if seed is not None:
        record["seed"] = int(seed)
    return record
