"""The paper's Adroit-binary data: the AWAC ``.npy`` trajectory files, read as the official loader.

``source: {kind: awac_npy, expert: PATH, bc: PATH}`` names the two files of a task from the
official repository's download (``{pen,door,relocate}2_sparse.npy`` expert demonstrations and
``{pen,door,relocate}_bc_sparse4.npy`` BC rollouts). Each is ``np.save`` of an object array of
trajectory dicts with ``observations, next_observations, actions, rewards, terminals`` (plus
``agent_infos, env_infos``, ignored). The transitions are exactly those of
``get_hand_dataset_with_mc_calculation`` in ``JaxCQL/replay_buffer.py`` (nakamotoo/Cal-QL @ ac6eafe):

- expert files: every observation is a dict whose ``state_observation`` is the state vector;
  ``rewards`` one longer than the observations is cut to their number N (the official check
  compares with ``terminals``' shape, then asserts equal shapes);
- BC files: ``rewards`` and ``terminals`` have a trailing axis of 1 (squeezed);
- raw rewards are -1, and 0 at success; a trajectory without a 0 is dropped, the others are cut
  after their last 0, and ``dones = (reward == 0)``: every success step is a terminal;
- the two files are concatenated, expert first.

Each kept trajectory therefore ends at a terminal, and its MC returns are computed over it as a
whole (``meta["segments"] = "terminals"``: no split at observation discontinuities, which the
official loader does not make either). Actions are stored raw (training clips them to 0.99999 as
the official ``clip_action``).

These files are pickles, and unpickling can run arbitrary code. They are read with
:class:`RestrictedUnpickler`, which builds only numpy arrays, dtypes and scalars and builtin
containers, and refuses every other class with a :class:`DatasetError` naming it.
"""

from __future__ import annotations

import importlib
import logging
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calql.config import TaskSpec
from calql.data.conventions import SOURCE_CONVENTIONS_KEY
from calql.data.format import Dataset
from calql.data.preprocess import SEGMENTS_KEY
from calql.data.sources import local_path
from calql.data.sources.download import sha256_file
from calql.data.sources.local_file import env_layout_for
from calql.data.sources.meta import source_meta
from calql.errors import ConfigError, DatasetError, describe

log = logging.getLogger(__name__)

#: Raw reward of a success step in the Adroit-binary data (official ``ENV_CONFIG reward_pos``).
SUCCESS_REWARD = 0.0
#: Module aliases: Python 2 and numpy < 2 names -> the names this interpreter has.
_MODULE_ALIASES = {
    "__builtin__": "builtins",
    "numpy.core.multiarray": "numpy._core.multiarray",
    "numpy.core.numeric": "numpy._core.numeric",
}
#: (module, name) the unpickler may build: numpy arrays, dtypes and scalars, builtin containers,
#: and ``_codecs.encode`` (how protocol-2 pickles store the bytes of an array).
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("_codecs", "encode"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only :data:`ALLOWED_GLOBALS` (a pickle can otherwise run code)."""

    source = "<pickle>"

    def find_class(self, module: str, name: str) -> Any:
        canonical = _MODULE_ALIASES.get(module, module)
        if (canonical, name) not in ALLOWED_GLOBALS:
            raise DatasetError(
                f"{self.source}: refusing to unpickle '{module}.{name}': only numpy arrays, dtypes and "
                f"scalars and builtin containers are allowed (unpickling other classes can run code)"
            )
        return getattr(importlib.import_module(canonical), name)


def load_pickled_npy(path: Path) -> Any:
    """``np.load(path, allow_pickle=True)`` through :class:`RestrictedUnpickler`."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                raise DatasetError(f"{path}: unsupported .npy format version {version}")
            shape, _, dtype = readers[version](f)
            if not dtype.hasobject:
                return np.load(path, allow_pickle=False)
            unpickler = RestrictedUnpickler(f, encoding="latin1")
            unpickler.source = str(path)
            array = unpickler.load()
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise DatasetError(
            f"cannot read {path} as a pickled .npy file (truncated or corrupted?): {describe(exc)}"
        ) from exc
    if not isinstance(array, np.ndarray) or array.shape != shape:
        raise DatasetError(f"{path}: expected an object array of shape {shape}, got {type(array).__name__}")
    return array


def _state(obs: Any, where: str) -> np.ndarray:
    """An expert observation: the ``state_observation`` of its dict (official loader)."""
    if not isinstance(obs, Mapping) or "state_observation" not in obs:
        found = sorted(obs) if isinstance(obs, Mapping) else type(obs).__name__
        raise DatasetError(f"{where}: expected a dict observation with 'state_observation', found {found}")
    return np.asarray(obs["state_observation"], dtype=np.float64)


def _trajectory(traj: Any, expert: bool, where: str) -> tuple[dict[str, np.ndarray] | None, bool]:
    """One trajectory as the official loader keeps it (``None`` when it never succeeds), and
    whether it was cut after its last success."""
    if not isinstance(traj, Mapping):
        raise DatasetError(f"{where}: expected a trajectory dict, found {type(traj).__name__}")
    missing = [k for k in ("observations", "next_observations", "actions", "rewards", "terminals") if k not in traj]
    if missing:
        raise DatasetError(f"{where}: trajectory lacks {missing} (has {sorted(traj)})")
    if expert:
        n = len(traj["observations"])
        obs = np.asarray([_state(o, where) for o in traj["observations"]])
        next_obs = np.asarray([_state(o, where) for o in traj["next_observations"]])
        rewards = np.asarray(traj["rewards"], dtype=np.float64)
        terminals = np.asarray(traj["terminals"])
        if rewards.shape != terminals.shape:
            rewards = rewards[:n]
        if rewards.shape != terminals.shape:
            raise DatasetError(
                f"{where}: rewards {rewards.shape} and terminals {terminals.shape} differ after "
                f"cutting rewards to the {n} observations"
            )
    else:
        obs = np.asarray(traj["observations"], dtype=np.float64)
        next_obs = np.asarray(traj["next_observations"], dtype=np.float64)
        rewards = np.asarray(traj["rewards"], dtype=np.float64).reshape(-1)
    success = np.flatnonzero(rewards == SUCCESS_REWARD)
    if len(success) == 0:
        return None, False
    end = int(success[-1]) + 1
    kept = {
        "observations": obs[:end],
        "next_observations": next_obs[:end],
        "actions": np.asarray(traj["actions"], dtype=np.float64)[:end],
        "rewards": rewards[:end],
        "terminals": rewards[:end] == SUCCESS_REWARD,
        "timeouts": np.zeros(end, dtype=bool),
    }
    return kept, end < len(rewards)


def read_file(path: Path, expert: bool) -> tuple[list[dict[str, np.ndarray]], dict[str, int]]:
    """The kept trajectories of one file and its counts (total, kept, dropped, truncated)."""
    trajectories = load_pickled_npy(path)
    if not isinstance(trajectories, (np.ndarray, Sequence)) or len(trajectories) == 0:
        raise DatasetError(f"{path}: expected a non-empty array of trajectory dicts")
    kept, n_cut = [], 0
    for i, traj in enumerate(trajectories):
        out, cut = _trajectory(traj, expert, f"{path} trajectory {i}")
        if out is not None:
            kept.append(out)
            n_cut += int(cut)
    counts = {
        "trajectories": len(trajectories),
        "kept": len(kept),
        "dropped_trajectories": len(trajectories) - len(kept),
        "truncated_trajectories": n_cut,
    }
    return kept, counts


def _file_record(path: Path) -> dict[str, Any]:
    return {"file": str(path.resolve()), "sha256": sha256_file(path), "size": path.stat().st_size}


def fetch(task: TaskSpec, cache_dir: Path) -> Dataset:
    """Read ``task.source['expert']`` and ``['bc']`` (relative paths: from the working directory)."""
    del cache_dir
    source = dict(task.source)
    parts: list[dict[str, np.ndarray]] = []
    files: dict[str, Any] = {}
    for key, expert in (("expert", True), ("bc", False)):
        if not source.get(key):
            raise ConfigError(f"task '{task.name}': source kind 'awac_npy' needs '{key}' (a .npy path)")
        path = local_path(source[key])
        if not path.is_file():
            raise DatasetError(f"task '{task.name}': {key} file not found: {path.resolve()}")
        kept, counts = read_file(path, expert)
        parts.extend(kept)
        files[key] = {**_file_record(path), **counts}
        log.info(
            "%s %s: %d of %d trajectories kept (%d dropped without success, %d cut after the last success)",
            key,
            path,
            counts["kept"],
            counts["trajectories"],
            counts["dropped_trajectories"],
            counts["truncated_trajectories"],
        )
    if not parts:
        raise DatasetError(
            f"task '{task.name}': no trajectory of {source['expert']} or {source['bc']} reaches success (raw reward 0)"
        )
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    layout = env_layout_for(task, arrays["observations"].shape[1])
    dropped = sum(f["dropped_trajectories"] for f in files.values())
    truncated = sum(f["truncated_trajectories"] for f in files.values())
    conventions = {
        "reader": "official get_hand_dataset_with_mc_calculation (JaxCQL/replay_buffer.py)",
        "dropped_trajectories": dropped,
        "truncated_trajectories": truncated,
        "conversions": [
            f"{dropped} trajectories without success dropped",
            f"{truncated} trajectories cut after their last success",
            "every success step (raw reward 0) a terminal",
        ],
    }
    meta = source_meta(
        task,
        {**source, **files},
        layout,
        next_observations="stored",
        **{SEGMENTS_KEY: "terminals", SOURCE_CONVENTIONS_KEY: conventions},
    )
    return Dataset(**arrays, meta=meta)
