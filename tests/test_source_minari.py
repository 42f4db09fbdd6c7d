"""Minari source against a tiny local dataset built with minari.create_dataset_from_buffers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calql.data.format import load_dataset, save_dataset
from calql.data.sources import fetch_dataset
from calql.envs.layout import flatten_obs
from calql.errors import DatasetError, DownloadError
from tests._sources_helpers import build_minari_pointmaze, make_task, minari_root_with

DATASET_ID = "test/pointmaze/umaze-v0"
LENGTHS = (5, 7, 4)
TERMINATE = (False, True, False)


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return minari_root_with(tmp_path_factory, lambda: build_minari_pointmaze(DATASET_ID, LENGTHS, TERMINATE))


@pytest.fixture
def root(minari_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    return minari_root


def _task(obs_keys=None, download=False, dataset_id=DATASET_ID, **kw):
    return make_task(
        {"kind": "minari", "id": dataset_id, "download": download},
        domain="pointmaze",
        env_id="PointMaze_UMaze-v3",
        obs_keys=obs_keys,
        **kw,
    )


def test_flattened_layout_shapes_and_flags(root: Path, tmp_path: Path) -> None:
    import minari

    ds = fetch_dataset(_task(), tmp_path)
    assert ds.meta["obs_layout"] == [{"key": "observation", "size": 4}, {"key": "desired_goal", "size": 2}]
    assert ds.size == sum(LENGTHS) and ds.obs_dim == 6 and ds.act_dim == 2
    ends = np.cumsum(LENGTHS) - 1  # rows 4, 11, 15
    np.testing.assert_array_equal(np.flatnonzero(ds.terminals), [ends[1]])
    np.testing.assert_array_equal(np.flatnonzero(ds.timeouts), [ends[0], ends[2]])
    # rows equal the episodes' own observations, flattened as the env wrapper does
    episodes = list(minari.load_dataset(DATASET_ID).iterate_episodes())
    flat = [flatten_obs(ep.observations, None) for ep in episodes]
    np.testing.assert_array_equal(ds.observations, np.concatenate([f[:-1] for f in flat]))
    np.testing.assert_array_equal(ds.next_observations, np.concatenate([f[1:] for f in flat]))
    np.testing.assert_array_equal(ds.actions, np.concatenate([ep.actions for ep in episodes]).astype(np.float32))
    np.testing.assert_array_equal(ds.rewards, np.concatenate([ep.rewards for ep in episodes]).astype(np.float32))
    # within an episode, next_obs[t] == obs[t + 1]
    inner = np.setdiff1d(np.arange(ds.size - 1), ends)
    np.testing.assert_array_equal(ds.next_observations[inner], ds.observations[inner + 1])
    m = ds.meta
    assert m["next_observations"] == "stored"
    assert m["env_id"] == "PointMaze_UMaze-v3" and m["max_episode_steps"] == 300
    assert m["env_kwargs"]["reward_type"] == "sparse"
    assert (m["ref_min_score"], m["ref_max_score"]) == (0.0, 1.0)
    assert m["source"]["minari_id"] == DATASET_ID and "packages" in m["provenance"]
    save_dataset(ds, tmp_path / "out.hdf5")
    assert load_dataset(tmp_path / "out.hdf5").meta["obs_layout"] == m["obs_layout"]


def test_obs_keys_order_followed(root: Path, tmp_path: Path) -> None:
    ds = fetch_dataset(_task(obs_keys=("achieved_goal", "observation")), tmp_path)
    assert ds.meta["obs_layout"] == [{"key": "achieved_goal", "size": 2}, {"key": "observation", "size": 4}]
    # PointMaze: achieved_goal is the ball's x, y = observation[:2]
    np.testing.assert_allclose(ds.observations[:, :2], ds.observations[:, 2:4], atol=1e-6)


def test_task_scores_override(root: Path, tmp_path: Path) -> None:
    ds = fetch_dataset(_task(ref_min=-3.0, ref_max=7.0), tmp_path)
    assert (ds.meta["ref_min_score"], ds.meta["ref_max_score"]) == (-3.0, 7.0)


def test_missing_dataset_without_download(root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not in the local Minari root") as err:
        fetch_dataset(_task(dataset_id="D4RL/antmaze/large-diverse-v1"), tmp_path)
    assert str(root / "D4RL/antmaze/large-diverse-v1") in str(err.value)


def test_failed_download_explains_manual_placement(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network here: fail at once
    with pytest.raises(DownloadError) as err:
        fetch_dataset(_task(dataset_id="D4RL/antmaze/large-diverse-v1", download=True), tmp_path)
    msg = str(err.value)
    assert "minari download D4RL/antmaze/large-diverse-v1" in msg
    assert str(root / "D4RL/antmaze/large-diverse-v1") in msg
