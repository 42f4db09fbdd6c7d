"""A dataset file the user already has: D4RL-format HDF5 (``.hdf5``/``.h5``) or NumPy ``.npz``.

Both need the D4RL arrays ``observations, actions, rewards, terminals`` and should have
``timeouts`` (without it, the episode cap must be known: see
:func:`calql.data.sources.d4rl.recover_timeouts`); ``next_observations`` is optional; the conversion is the D4RL source's (:func:`calql.data.sources.d4rl.to_transitions`,
including synthesized next observations). The observation layout comes, in this order, from the
D4RL registry when the file is a known D4RL file (named after the dataset or its original file
name), from the file's own calql metadata, or from the task's environment (built once to read it).

The Cal-QL paper's Adroit-binary demonstrations (pickled ``.npy`` lists of trajectories) have
their own source kind, ``awac_npy`` (:mod:`calql.data.sources.awac_npy`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from calql.config import TaskSpec
from calql.data.format import META_ATTR, Dataset
from calql.data.sources import local_path
from calql.data.sources.d4rl import (
    D4RL_KEYS,
    OPTIONAL_KEYS,
    check_arrays,
    check_obs_keys,
    read_d4rl_arrays,
    registry,
    to_transitions,
)
from calql.data.sources.download import sha256_file
from calql.data.sources.meta import source_meta
from calql.envs.layout import Layout, layout_size
from calql.errors import ConfigError, DatasetError, EnvMismatchError, describe

log = logging.getLogger(__name__)

HDF5_SUFFIXES = (".hdf5", ".h5")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The D4RL arrays of an ``.npz`` file (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in D4RL_KEYS if k not in npz.files]
            if missing:
                raise DatasetError(f"{path} lacks the arrays {missing} (it has {sorted(npz.files)})")
            keys = [*D4RL_KEYS, *(k for k in OPTIONAL_KEYS if k in npz.files)]
            return {k: np.asarray(npz[k]) for k in keys}
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"cannot read {path} as .npz (truncated or corrupted?): {describe(exc)}") from exc


def registry_match(path: Path) -> tuple[str, dict[str, Any]] | None:
    """The D4RL entry this file is, by name (``antmaze-large-diverse-v2.hdf5``) or original file name."""
    for name, entry in registry()["datasets"].items():
        if path.stem == name or path.name == Path(entry["path"]).name:
            return name, entry
    return None


def _calql_meta(path: Path) -> dict[str, Any]:
    if path.suffix not in HDF5_SUFFIXES:
        return {}
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(META_ATTR)
    except OSError:
        return {}
    return json.loads(raw) if raw else {}


def env_layout_for(task: TaskSpec, obs_dim: int) -> Layout:
    """The task environment's layout when its size matches the data; a flat layout if no env."""
    try:
        from calql.envs.make import env_layout

        layout = env_layout(task)
    except EnvMismatchError:
        raise
    except Exception as exc:  # env not installed / not buildable here: keep the data usable
        log.warning(
            "could not build env %s to read its observation layout (%s); recording a flat layout of %d dims",
            task.env_id,
            exc,
            obs_dim,
        )
        return [{"key": "obs", "size": int(obs_dim)}]
    if layout_size(layout) != obs_dim:
        raise EnvMismatchError(
            f"task '{task.name}': the file's observations have {obs_dim} dims but env {task.env_id} "
            f"with obs_keys {list(task.obs_keys) if task.obs_keys else 'default'} gives layout {layout} "
            f"(size {layout_size(layout)})"
        )
    return layout


def fetch(task: TaskSpec, cache_dir: Path) -> Dataset:
    """Read ``task.source['path']`` (relative paths: from the working directory) and convert it."""
    del cache_dir
    source = dict(task.source)
    if not source.get("path"):
        raise ConfigError(f"task '{task.name}': source kind 'file' needs a 'path'")
    path = local_path(source["path"])
    if not path.is_file():
        raise DatasetError(f"task '{task.name}': dataset file not found: {path.resolve()}")
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        arrays = read_d4rl_arrays(path)
    elif suffix == ".npz":
        arrays = read_npz(path)
    elif suffix == ".npy":
        raise DatasetError(
            f"{path}: .npy files are not supported by the 'file' source; the Cal-QL paper's pickled Adroit-binary "
            f"demos have their own source: {{kind: awac_npy, expert: <...2_sparse.npy>, bc: <..._bc_sparse4.npy>}}"
        )
    else:
        raise DatasetError(f"{path}: unknown file type '{path.suffix}' (expected .hdf5, .h5 or .npz)")

    match = registry_match(path)
    entry = match[1] if match else None
    check_arrays(arrays, str(path), (entry or {}).get("obs_dim"), (entry or {}).get("act_dim"))
    out, info = to_transitions(arrays, task.max_episode_steps or (entry or {}).get("max_episode_steps"))
    obs_dim = out["observations"].shape[1]

    file_meta = _calql_meta(path)
    if entry is not None:
        layout: Layout = [dict(p) for p in entry["obs_layout"]]
        if entry.get("env_compatible") != "none":
            check_obs_keys(task, layout, f"D4RL file {path.name}")
        refs = (entry.get("ref_min_score"), entry.get("ref_max_score"))
    elif file_meta.get("obs_layout") and layout_size(file_meta["obs_layout"]) == obs_dim:
        layout = file_meta["obs_layout"]
        refs = (file_meta.get("ref_min_score"), file_meta.get("ref_max_score"))
    else:
        layout = env_layout_for(task, obs_dim)
        refs = (None, None)

    found = {
        "file": str(path.resolve()),
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
        **({"d4rl_name": match[0]} if match else {}),
    }
    meta = source_meta(
        task, {**source, **found}, layout, refs=refs, next_observations=info["next_observations"], conversion=info
    )
    log.info(
        "file %s: %d transitions (%s next observations, %d rows dropped)",
        path,
        out["rewards"].size,
        info["next_observations"],
        info["dropped_rows"],
    )
    return Dataset(**out, meta=meta)
