"""D4RL source: registry, download (against a local HTTP server), verification, conversion."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from calql.data.format import load_dataset, save_dataset
from calql.data.sources import d4rl, download, fetch_dataset
from calql.errors import ConfigError, DatasetError, DownloadError, EnvMismatchError
from tests._sources_helpers import d4rl_arrays, free_port_url, http_server, make_task, write_hdf5

ANT_KEYS = ("achieved_goal", "observation")
NAME = "antmaze-umaze-v2"


@pytest.fixture(autouse=True)
def _no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "RETRY_DELAY", 0.0)


def _serve_root(tmp_path: Path, arrays: dict[str, np.ndarray] | None = None) -> tuple[Path, Path]:
    """A server root holding NAME's file at its registry path; returns (root, file)."""
    root = tmp_path / "www"
    rel = d4rl.lookup(NAME)["path"]
    f = write_hdf5(root / rel, arrays if arrays is not None else d4rl_arrays())
    return root, f


def _task(base_url: str | None = None, **source: str):
    src = {"kind": "d4rl", "name": NAME, **source}
    if base_url:
        src["base_url"] = base_url
    return make_task(src, obs_keys=ANT_KEYS, env_id="AntMaze_UMaze-v5")


def _qlearning_reference(a: dict[str, np.ndarray]) -> tuple[list[int], list[bool]]:
    """d4rl.qlearning_dataset's loop (terminate_on_end=False, with timeouts), transcribed:
    the kept row indices and their terminal flags."""
    n = a["rewards"].shape[0]
    kept, dones = [], []
    for i in range(n - 1):
        done_bool = bool(a["terminals"][i])
        final_timestep = bool(a["timeouts"][i])
        if final_timestep:
            continue
        kept.append(i)
        dones.append(done_bool)
    return kept, dones


# ----------------------------------------------------------------------------- conversion
def test_synthesized_next_obs_hand_computed() -> None:
    # rows 0,1,2(timeout) | 3,4(terminal) | 5,6,7(timeout, last row)
    a = d4rl_arrays(episode_lengths=(3, 2, 3), obs_dim=3, act_dim=2, terminal_last=(False, True, False))
    out, info = d4rl.to_transitions(a)
    np.testing.assert_array_equal(out["observations"][:, 0], [0, 1, 3, 4, 5, 6])
    np.testing.assert_array_equal(out["next_observations"][:, 0], [1, 2, 4, 5, 6, 7])
    np.testing.assert_array_equal(out["terminals"], [0, 0, 0, 1, 0, 0])
    # the kept row before each dropped timeout row ends a truncated trajectory
    np.testing.assert_array_equal(out["timeouts"], [0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(out["rewards"], a["rewards"][[0, 1, 3, 4, 5, 6]])
    np.testing.assert_array_equal(out["actions"], a["actions"][[0, 1, 3, 4, 5, 6]])
    assert info == {
        "next_observations": "synthesized",
        "raw_rows": 8,
        "dropped_rows": 2,
        "end_marked_timeout": False,
        "timeouts": "stored",
    }


def test_synthesized_matches_d4rl_qlearning_dataset() -> None:
    rng = np.random.default_rng(3)
    lengths = tuple(int(x) for x in rng.integers(1, 9, size=40))
    ends = tuple(bool(x) for x in rng.integers(0, 2, size=40))
    a = d4rl_arrays(episode_lengths=lengths, obs_dim=4, act_dim=2, terminal_last=ends, seed=1)
    a["timeouts"][-1] = False  # data ending mid-episode
    a["terminals"][-1] = False
    out, _ = d4rl.to_transitions(a)
    kept, dones = _qlearning_reference(a)
    np.testing.assert_array_equal(out["observations"], a["observations"][kept])
    np.testing.assert_array_equal(out["next_observations"], a["observations"][np.asarray(kept) + 1])
    np.testing.assert_array_equal(out["terminals"], dones)
    # Episode boundaries are explicit: an unflagged row continues into the next output row, and
    # the row after a flagged one starts a new source episode (obs[:, 0] is the source row).
    rows = out["observations"][:, 0].astype(int)
    src_end = a["terminals"] | a["timeouts"]
    ends = out["terminals"] | out["timeouts"]
    for j in range(len(rows) - 1):
        if ends[j]:
            assert src_end[rows[j + 1] - 1], j
        else:
            assert rows[j + 1] == rows[j] + 1, j
            np.testing.assert_array_equal(out["next_observations"][j], out["observations"][j + 1])
    assert ends[-1] and not out["timeouts"][out["terminals"]].any()


def test_recovered_timeouts_match_d4rl_counter() -> None:
    """d4rl.qlearning_dataset without 'timeouts' (final_timestep from its step counter)."""
    rng = np.random.default_rng(5)
    terminals = rng.random(300) < 0.03
    max_steps = 7
    kept, step = [], 0
    for i in range(terminals.size - 1):  # transcribed from d4rl/__init__.py
        final_timestep = step == max_steps - 1
        if final_timestep:
            step = 0
            continue
        if terminals[i] or final_timestep:
            step = 0
        kept.append(i)
        step += 1
    a = {
        "observations": np.arange(300, dtype=np.float32)[:, None],
        "actions": np.zeros((300, 1)),
        "rewards": np.zeros(300),
        "terminals": terminals,
    }
    out, info = d4rl.to_transitions(a, max_episode_steps=max_steps)
    np.testing.assert_array_equal(out["observations"][:, 0], kept)
    assert info["timeouts"].startswith("recovered")
    with pytest.raises(DatasetError, match="no 'timeouts' array"):
        d4rl.to_transitions(a)


def test_stored_next_obs_kept_as_is() -> None:
    a = d4rl_arrays(episode_lengths=(3, 2), obs_dim=3, act_dim=2)
    a["next_observations"] = a["observations"] + 100
    a["timeouts"][-1] = False
    out, info = d4rl.to_transitions(a)
    assert info["next_observations"] == "stored" and info["dropped_rows"] == 0
    np.testing.assert_array_equal(out["next_observations"], a["observations"] + 100)
    np.testing.assert_array_equal(out["timeouts"], [0, 0, 1, 0, 1])  # last row marked truncated
    assert info["end_marked_timeout"] is True


def test_inconsistent_lengths_rejected(tmp_path: Path) -> None:
    a = d4rl_arrays()
    a["rewards"] = a["rewards"][:-2]
    f = write_hdf5(tmp_path / "x.hdf5", a)
    with pytest.raises(DatasetError, match="'rewards' has 10 rows but 'observations' has 12"):
        d4rl.check_arrays(d4rl.read_d4rl_arrays(f), str(f))


# ----------------------------------------------------------------------------- registry
def test_registry_entries_consistent() -> None:
    reg = d4rl.registry()
    names = reg["datasets"]
    for required in [
        "antmaze-umaze-v2",
        "antmaze-umaze-diverse-v2",
        "antmaze-medium-play-v2",
        "antmaze-medium-diverse-v2",
        "antmaze-large-play-v2",
        "antmaze-large-diverse-v2",
        "kitchen-complete-v0",
        "kitchen-partial-v0",
        "kitchen-mixed-v0",
        *[f"{e}-{d}-v1" for e in ("pen", "door", "relocate", "hammer") for d in ("human", "cloned", "expert")],
    ]:
        assert required in names
    for name, e in names.items():
        assert sum(p["size"] for p in e["obs_layout"]) == e["obs_dim"], name
        assert e["ref_max_score"] > e["ref_min_score"], name
        assert e["path"].endswith(".hdf5"), name
    assert d4rl.resolve_url({"name": "antmaze-large-diverse-v2"}, names["antmaze-large-diverse-v2"]) == (
        "http://rail.eecs.berkeley.edu/datasets/offline_rl/ant_maze_v2/"
        "Ant_maze_hardest-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5"
    )


def test_registry_layouts_match_environments() -> None:
    """Each registry env (where the layout is meant to match) gives the recorded layout."""
    import gymnasium as gym
    import gymnasium_robotics

    from calql.envs.layout import layout_of

    gym.register_envs(gymnasium_robotics)
    seen: set[str] = set()
    for name, e in d4rl.registry()["datasets"].items():
        key = e["env_id"] + repr(sorted(e["env_kwargs"].items()))
        if e["env_compatible"] == "none" or key in seen:
            continue
        seen.add(key)
        env = gym.make(e["env_id"], **e["env_kwargs"])
        try:
            keys = [p["key"] for p in e["obs_layout"]]
            layout = layout_of(env.observation_space, None if keys == ["obs"] else keys)
            assert layout == e["obs_layout"], name
            assert env.action_space.shape == (e["act_dim"],), name
        finally:
            env.close()
    assert len(seen) >= 10


def test_unknown_name_suggests_close_matches(tmp_path: Path) -> None:
    task = make_task({"kind": "d4rl", "name": "antmaze-large-divers-v2"})
    with pytest.raises(ConfigError, match="Did you mean: antmaze-large-diverse-v2"):
        fetch_dataset(task, tmp_path)


# ----------------------------------------------------------------------------- fetch
def test_download_then_cache_hit(tmp_path: Path) -> None:
    root, served = _serve_root(tmp_path)
    cache = tmp_path / "cache"
    with http_server(root) as (url, requests):
        ds = fetch_dataset(_task(url), cache)
        assert len(requests) == 1
        again = fetch_dataset(_task(url), cache)
        assert len(requests) == 1  # second fetch made no request
    path = d4rl.cache_path(cache, NAME)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".json"]
    assert path.read_bytes() == served.read_bytes()
    m = ds.meta
    assert m["source"]["url"] == f"{url}/{d4rl.lookup(NAME)['path']}"
    assert m["source"]["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
    assert m["source"]["downloaded"] is True and again.meta["source"]["downloaded"] is False
    assert m["next_observations"] == "synthesized"
    assert m["obs_layout"] == [{"key": "achieved_goal", "size": 2}, {"key": "observation", "size": 27}]
    assert (m["ref_min_score"], m["ref_max_score"]) == (0.0, 1.0)
    assert m["env_id"] == "AntMaze_UMaze-v5" and "git_commit" in m["provenance"]
    assert ds.size == 12 - 3 and ds.obs_dim == 29 and ds.act_dim == 8
    np.testing.assert_array_equal(ds.observations, again.observations)
    # the metadata survives the on-disk format
    save_dataset(ds, tmp_path / "out.hdf5")
    back = load_dataset(tmp_path / "out.hdf5")
    assert back.meta["obs_layout"] == m["obs_layout"] and back.size == ds.size


def test_full_url_override(tmp_path: Path) -> None:
    root = tmp_path / "www"
    write_hdf5(root / "mirror" / "my-copy.hdf5", d4rl_arrays())
    with http_server(root) as (url, requests):
        ds = fetch_dataset(_task(url=f"{url}/mirror/my-copy.hdf5"), tmp_path / "cache")
    assert requests == ["/mirror/my-copy.hdf5"]
    assert ds.meta["source"]["url"].endswith("/mirror/my-copy.hdf5")


def test_file_url_base(tmp_path: Path) -> None:
    """A shared folder mirroring D4RL's layout works as base_url (file://)."""
    root, _ = _serve_root(tmp_path)
    ds = fetch_dataset(_task(root.as_uri()), tmp_path / "cache")
    assert ds.size == 9 and ds.meta["source"]["url"].startswith("file://")


def test_task_scores_override_registry(tmp_path: Path) -> None:
    root, _ = _serve_root(tmp_path)
    with http_server(root) as (url, _):
        task = make_task({"kind": "d4rl", "name": NAME, "base_url": url}, obs_keys=ANT_KEYS, ref_min=-1.0, ref_max=2.0)
        ds = fetch_dataset(task, tmp_path / "cache")
    assert (ds.meta["ref_min_score"], ds.meta["ref_max_score"]) == (-1.0, 2.0)


def test_truncated_transfer_rejected(tmp_path: Path) -> None:
    root, _ = _serve_root(tmp_path)
    cache = tmp_path / "cache"
    with http_server(root, truncate=True) as (url, requests):
        with pytest.raises(DownloadError) as err:
            fetch_dataset(_task(url), cache)
    assert len(requests) == 3  # first try + 2 retries
    msg = str(err.value)
    assert "truncated transfer" in msg
    assert url in msg and str(d4rl.cache_path(cache, NAME)) in msg
    assert not list((cache / "d4rl").iterdir())  # no partial or complete-looking file left


def test_missing_file_on_server_not_retried(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with http_server(tmp_path / "empty") as (url, requests):
        with pytest.raises(DownloadError, match="HTTP 404"):
            fetch_dataset(_task(url), tmp_path / "cache")
    assert len(requests) == 1


def test_server_down_names_url_and_manual_path(tmp_path: Path) -> None:
    base = free_port_url()
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as err:
        fetch_dataset(_task(base), cache)
    msg = str(err.value)
    assert f"{base}/{d4rl.lookup(NAME)['path']}" in msg
    assert str(d4rl.cache_path(cache, NAME)) in msg


def test_hand_placed_file_used_without_network(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    write_hdf5(d4rl.cache_path(cache, NAME), d4rl_arrays())
    ds = fetch_dataset(_task(free_port_url()), cache)
    assert ds.size == 9 and ds.meta["source"]["downloaded"] is False


def test_corrupted_cache_is_replaced(tmp_path: Path) -> None:
    root, served = _serve_root(tmp_path)
    cache = tmp_path / "cache"
    path = d4rl.cache_path(cache, NAME)
    path.parent.mkdir(parents=True)
    path.write_bytes(served.read_bytes()[:3000])  # a truncated HDF5 file
    with http_server(root) as (url, requests):
        ds = fetch_dataset(_task(url), cache)
    assert len(requests) == 1 and ds.size == 9
    assert path.read_bytes() == served.read_bytes()
    assert path.with_name(path.name + ".corrupt").exists()


def test_wrong_dimensions_rejected(tmp_path: Path) -> None:
    root, _ = _serve_root(tmp_path, d4rl_arrays(obs_dim=30))
    with http_server(root) as (url, _):
        with pytest.raises(DatasetError, match="observations have 30 dims, expected 29"):
            fetch_dataset(_task(url), tmp_path / "cache")
    assert not d4rl.cache_path(tmp_path / "cache", NAME).exists()


def test_obs_keys_mismatch_fails_early(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    write_hdf5(d4rl.cache_path(cache, NAME), d4rl_arrays())
    task = make_task({"kind": "d4rl", "name": NAME})  # default keys [observation, desired_goal]
    with pytest.raises(EnvMismatchError, match=r"set env.obs_keys: \[achieved_goal, observation\]"):
        fetch_dataset(task, cache)


def test_sha256_mismatch_rejected(tmp_path: Path) -> None:
    root, served = _serve_root(tmp_path)
    with http_server(root) as (url, _):
        target = f"{url}/{d4rl.lookup(NAME)['path']}"
        with pytest.raises(DownloadError, match="SHA-256"):
            download.download(target, tmp_path / "x.hdf5", sha256="0" * 64)
        got = download.download(target, tmp_path / "y.hdf5", sha256=hashlib.sha256(served.read_bytes()).hexdigest())
    assert not (tmp_path / "x.hdf5").exists() and got.size == served.stat().st_size
