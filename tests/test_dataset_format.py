"""The on-disk format: round trip, checksum, truncation, atomic writes."""

import os

import h5py
import numpy as np
import pytest

from calql.atomic import atomic_path
from calql.data.format import Dataset, load_dataset, read_meta, save_dataset
from calql.errors import DatasetError


def tiny(n: int = 10, labeled: bool = False) -> Dataset:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
    extra = {"mc_returns": rng.normal(size=n), "train_rewards": rng.normal(size=n)} if labeled else {}
    return Dataset(
        observations=obs[:-1],
        actions=rng.uniform(-1, 1, (n, 2)),
        rewards=rng.normal(size=n),
        terminals=np.zeros(n),
        timeouts=np.eye(1, n, n - 1)[0],
        next_observations=obs[1:],
        meta={"env_id": "X-v0"},
        **extra,
    )


def test_roundtrip(tmp_path):
    ds = tiny(labeled=True)
    path = tmp_path / "d.hdf5"
    checksum = save_dataset(ds, path)
    back = load_dataset(path)
    for key, arr in ds.arrays().items():
        np.testing.assert_array_equal(getattr(back, key), arr)
    meta = read_meta(path)
    assert meta["checksum"] == checksum and meta["env_id"] == "X-v0" and meta["n_transitions"] == 10
    with h5py.File(path) as f:  # D4RL keys readable by any HDF5 tool
        assert {"observations", "actions", "rewards", "terminals", "timeouts", "next_observations"} <= set(f)


def test_corrupted_array_detected(tmp_path):
    path = tmp_path / "d.hdf5"
    save_dataset(tiny(), path)
    with h5py.File(path, "r+") as f:
        f["rewards"][3] = 123.0
    with pytest.raises(DatasetError, match="corrupted: checksum"):
        load_dataset(path)


def test_truncated_file_detected(tmp_path):
    path = tmp_path / "d.hdf5"
    save_dataset(tiny(2000), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError):
        load_dataset(path)


def test_inconsistent_arrays_rejected():
    ds = tiny()
    with pytest.raises(DatasetError, match="'actions' has 9 rows"):
        Dataset(
            observations=ds.observations,
            actions=ds.actions[:-1],
            rewards=ds.rewards,
            terminals=ds.terminals,
            timeouts=ds.timeouts,
            next_observations=ds.next_observations,
        )
    with pytest.raises(DatasetError, match="NaN"):
        Dataset(
            observations=ds.observations,
            actions=ds.actions,
            rewards=np.full(10, np.nan),
            terminals=ds.terminals,
            timeouts=ds.timeouts,
            next_observations=ds.next_observations,
        )


def test_crash_leaves_no_output(tmp_path):
    target = tmp_path / "out.hdf5"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert not target.exists() and os.listdir(tmp_path) == []


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "none.hdf5")
