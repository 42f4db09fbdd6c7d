"""File source: a local D4RL-format HDF5 or NPZ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calql.data.format import save_dataset
from calql.data.sources import fetch_dataset
from calql.errors import DatasetError, EnvMismatchError
from tests._sources_helpers import d4rl_arrays, make_task, write_hdf5


def _task(path: Path, **kw):
    return make_task({"kind": "file", "path": str(path)}, **kw)


def test_hdf5_named_like_d4rl_uses_registry(tmp_path: Path) -> None:
    f = write_hdf5(tmp_path / "antmaze-large-diverse-v2.hdf5", d4rl_arrays())
    ds = fetch_dataset(_task(f, obs_keys=("achieved_goal", "observation")), tmp_path / "cache")
    m = ds.meta
    assert m["source"]["d4rl_name"] == "antmaze-large-diverse-v2"
    assert m["obs_layout"] == [{"key": "achieved_goal", "size": 2}, {"key": "observation", "size": 27}]
    assert (m["ref_min_score"], m["ref_max_score"]) == (0.0, 1.0)
    assert m["next_observations"] == "synthesized" and ds.size == 9
    assert len(m["source"]["sha256"]) == 64


def test_npz_layout_from_environment(tmp_path: Path) -> None:
    a = d4rl_arrays(episode_lengths=(3, 4), obs_dim=6, act_dim=2)
    a["next_observations"] = a["observations"] + 1
    f = tmp_path / "pm.npz"
    np.savez(f, **a)
    task = _task(f, domain="pointmaze", env_id="PointMaze_UMaze-v3")
    ds = fetch_dataset(task, tmp_path / "cache")
    assert ds.meta["obs_layout"] == [{"key": "observation", "size": 4}, {"key": "desired_goal", "size": 2}]
    assert ds.meta["next_observations"] == "stored" and ds.size == 7
    np.testing.assert_array_equal(ds.next_observations, a["observations"] + 1)
    assert (ds.meta["ref_min_score"], ds.meta["ref_max_score"]) == (None, None)


def test_npz_size_mismatch_with_env(tmp_path: Path) -> None:
    f = tmp_path / "pm.npz"
    np.savez(f, **d4rl_arrays(obs_dim=7, act_dim=2))
    with pytest.raises(EnvMismatchError, match="7 dims"):
        fetch_dataset(_task(f, domain="pointmaze", env_id="PointMaze_UMaze-v3"), tmp_path)


def test_calql_file_keeps_its_layout(tmp_path: Path) -> None:
    a = d4rl_arrays(obs_dim=5, act_dim=2)
    f = write_hdf5(tmp_path / "own.hdf5", a)
    ds = fetch_dataset(_task(f, env_id="NoSuchEnv-v0"), tmp_path)  # env cannot be built: flat layout
    assert ds.meta["obs_layout"] == [{"key": "obs", "size": 5}]
    ds.meta["obs_layout"] = [{"key": "a", "size": 3}, {"key": "b", "size": 2}]
    save_dataset(ds, tmp_path / "saved.hdf5")
    again = fetch_dataset(_task(tmp_path / "saved.hdf5", env_id="NoSuchEnv-v0"), tmp_path)
    assert again.meta["obs_layout"] == [{"key": "a", "size": 3}, {"key": "b", "size": 2}]
    assert again.meta["next_observations"] == "stored" and again.size == ds.size


def test_missing_path_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset file not found: .*nope.hdf5"):
        fetch_dataset(_task(tmp_path / "nope.hdf5"), tmp_path)


def test_missing_keys_named(tmp_path: Path) -> None:
    a = d4rl_arrays()
    del a["terminals"]
    f = tmp_path / "x.npz"
    np.savez(f, **a)
    with pytest.raises(DatasetError, match=r"lacks the arrays \['terminals'\]"):
        fetch_dataset(_task(f), tmp_path)
    g = write_hdf5(tmp_path / "x.hdf5", a)
    with pytest.raises(DatasetError, match=r"lacks the D4RL arrays \['terminals'\]"):
        fetch_dataset(_task(g), tmp_path)


def test_missing_timeouts_need_episode_cap(tmp_path: Path) -> None:
    a = d4rl_arrays(episode_lengths=(4, 4, 4), obs_dim=5, act_dim=2)
    del a["timeouts"]
    f = write_hdf5(tmp_path / "old.hdf5", a)
    with pytest.raises(DatasetError, match="no 'timeouts' array"):
        fetch_dataset(_task(f, env_id="NoSuchEnv-v0"), tmp_path)
    ds = fetch_dataset(_task(f, env_id="NoSuchEnv-v0", max_episode_steps=4), tmp_path)
    np.testing.assert_array_equal(ds.observations[:, 0], [0, 1, 2, 4, 5, 6, 8, 9, 10])
    assert ds.meta["conversion"]["timeouts"].startswith("recovered")


def test_npy_and_garbage_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "demos.npy", np.zeros(3))
    with pytest.raises(DatasetError, match="not supported"):
        fetch_dataset(_task(tmp_path / "demos.npy"), tmp_path)
    (tmp_path / "bad.hdf5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(DatasetError, match="cannot read .* as HDF5"):
        fetch_dataset(_task(tmp_path / "bad.hdf5"), tmp_path)
