"""The one on-disk dataset format shared by every source.

An HDF5 file with D4RL's flat keys, so any D4RL-aware tool can read it::

    observations       float32 [N, obs_dim]
    actions            float32 [N, act_dim]
    rewards            float32 [N]      raw environment rewards (before scale/bias)
    terminals          bool    [N]      true environment terminations (bootstrapping stops)
    timeouts           bool    [N]      time-limit truncations (NOT terminals)
    next_observations  float32 [N, obs_dim]

A labeled dataset (``calql label``) adds::

    mc_returns         float32 [N]      Monte-Carlo returns of the scaled rewards
    train_rewards      float32 [N]      rewards after scale and bias: what the agent trains on

plus metadata in the root attribute ``calql_meta`` (one JSON document): source, environment id
and kwargs, observation layout, reference scores, generator seed, package versions, and the
checksum of the arrays. :func:`load_dataset` recomputes the checksum and refuses a file whose
arrays do not match it, so a truncated or corrupted file is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from calql.atomic import atomic_path
from calql.errors import DatasetError, describe

#: Arrays every dataset has, with their dtype and number of dimensions.
REQUIRED_KEYS: dict[str, tuple[type, int]] = {
    "observations": (np.float32, 2),
    "actions": (np.float32, 2),
    "rewards": (np.float32, 1),
    "terminals": (np.bool_, 1),
    "timeouts": (np.bool_, 1),
    "next_observations": (np.float32, 2),
}
#: Arrays added by MC-return labeling.
LABEL_KEYS: dict[str, tuple[type, int]] = {
    "mc_returns": (np.float32, 1),
    "train_rewards": (np.float32, 1),
}
FORMAT_VERSION = 1
META_ATTR = "calql_meta"


@dataclass
class Dataset:
    """Transitions in D4RL layout plus metadata (see module docstring)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    next_observations: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    mc_returns: np.ndarray | None = None
    train_rewards: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
        self.terminals = np.asarray(self.terminals).astype(bool).reshape(-1)
        self.timeouts = np.asarray(self.timeouts).astype(bool).reshape(-1)
        self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        if self.mc_returns is not None:
            self.mc_returns = np.asarray(self.mc_returns, dtype=np.float32).reshape(-1)
        if self.train_rewards is not None:
            self.train_rewards = np.asarray(self.train_rewards, dtype=np.float32).reshape(-1)
        self.validate()

    # ------------------------------------------------------------------ shape checks
    @property
    def size(self) -> int:
        return int(self.rewards.shape[0])

    def __len__(self) -> int:
        return self.size

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def is_labeled(self) -> bool:
        return self.mc_returns is not None

    def arrays(self) -> dict[str, np.ndarray]:
        """All arrays present, by HDF5 key."""
        out = {k: getattr(self, k) for k in REQUIRED_KEYS}
        for k in LABEL_KEYS:
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out

    def validate(self) -> None:
        """Raise :class:`DatasetError` naming the first inconsistent array."""
        n = self.rewards.shape[0]
        for key, (_, ndim) in {**REQUIRED_KEYS, **LABEL_KEYS}.items():
            arr = getattr(self, key)
            if arr is None:
                continue
            if arr.ndim != ndim:
                raise DatasetError(f"dataset array '{key}' has {arr.ndim} dims, expected {ndim}")
            if arr.shape[0] != n:
                raise DatasetError(f"dataset array '{key}' has {arr.shape[0]} rows but 'rewards' has {n}")
        if self.next_observations.shape != self.observations.shape:
            raise DatasetError(
                f"'next_observations' shape {self.next_observations.shape} differs from "
                f"'observations' shape {self.observations.shape}"
            )
        for key, arr in self.arrays().items():
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise DatasetError(f"dataset array '{key}' contains NaN or inf")

    def checksum(self) -> str:
        """SHA-256 over every array's bytes, shape and dtype, in key order."""
        h = hashlib.sha256()
        for key, arr in sorted(self.arrays().items()):
            h.update(key.encode())
            h.update(str(arr.shape).encode())
            h.update(str(arr.dtype).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()


def save_dataset(dataset: Dataset, path: str | os.PathLike[str], compression: str | None = None) -> str:
    """Write ``dataset`` atomically to ``path``; returns the checksum stored in its metadata."""
    dataset.validate()
    checksum = dataset.checksum()
    meta = dict(dataset.meta)
    meta["format_version"] = FORMAT_VERSION
    meta["checksum"] = checksum
    meta["n_transitions"] = dataset.size
    meta["obs_dim"] = dataset.obs_dim
    meta["act_dim"] = dataset.act_dim
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for key, arr in dataset.arrays().items():
                f.create_dataset(key, data=arr, compression=compression)
            f.attrs[META_ATTR] = json.dumps(meta, sort_keys=True, default=str)
    dataset.meta = meta
    return checksum


#: What h5py and the JSON decoder raise on a damaged file: a bad signature or superblock
#: (OSError), a broken B-tree, heap or symbol table (RuntimeError, KeyError), a damaged metadata
#: attribute (ValueError, which includes JSONDecodeError and UnicodeDecodeError), a wrong type
#: where the format expects another (TypeError).
DAMAGE_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


def _parse_meta(path: Path, raw: Any) -> dict[str, Any]:
    """The JSON metadata attribute as a dict; damage is a DatasetError naming the file."""
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except DAMAGE_ERRORS as exc:
        raise DatasetError(f"{path}: its '{META_ATTR}' metadata is damaged ({describe(exc)})") from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: its '{META_ATTR}' metadata is damaged (a {type(meta).__name__}, not a mapping)")
    return meta


def _damaged(path: Path, exc: BaseException) -> DatasetError:
    return DatasetError(f"cannot read dataset file {path}: damaged or truncated ({describe(exc)})")


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Only the metadata of a dataset file (cheap: no arrays are read)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(META_ATTR)
    except DAMAGE_ERRORS as exc:
        raise _damaged(path, exc) from exc
    if raw is None:
        raise DatasetError(f"{path} has no '{META_ATTR}' metadata: not written by calql")
    return _parse_meta(path, raw)


def _read_file(path: Path) -> tuple[dict[str, np.ndarray], Any]:
    """Every array of ours in the file and the raw metadata attribute."""
    with h5py.File(path, "r") as f:
        missing = [k for k in REQUIRED_KEYS if k not in f]
        if missing:
            raise DatasetError(f"{path} lacks required arrays {missing}")
        arrays = {k: f[k][()] for k in [*REQUIRED_KEYS, *LABEL_KEYS] if k in f}
        return arrays, f.attrs.get(META_ATTR)


def load_dataset(path: str | os.PathLike[str], verify: bool = True) -> Dataset:
    """Read a calql dataset file; with ``verify`` the checksum must match the arrays.

    Every kind of damage (header, superblock, an array, the metadata attribute) is a
    :class:`DatasetError` naming the file; the caller decides what to do with the file
    (:mod:`calql.data.damage` moves it aside so that the workflow rebuilds it).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset file not found: {path}")
    try:
        arrays, raw = _read_file(path)
    except DAMAGE_ERRORS as exc:
        raise _damaged(path, exc) from exc
    meta = _parse_meta(path, raw)
    try:
        dataset = Dataset(**arrays, meta=meta)
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    except DAMAGE_ERRORS as exc:  # arrays of the wrong shape or type
        raise _damaged(path, exc) from exc
    if verify:
        expected = meta.get("checksum")
        if expected is None:
            raise DatasetError(f"{path} has no checksum in its metadata; refusing to use it")
        actual = dataset.checksum()
        if actual != expected:
            raise DatasetError(
                f"{path} is corrupted: checksum {actual[:12]}… does not match the recorded {str(expected)[:12]}…"
            )
    return dataset
