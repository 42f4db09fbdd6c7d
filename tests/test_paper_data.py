"""The locally made paper data (tests/paper_data.py) go through calql's sources like the real
files: each of the ten paper tasks under its exact id/path, ``calql dataset`` + ``calql label``
on config/paper.yaml pointed at them (no download), the official conventions after labeling, and
observations as wide as the online envs. The D4RL AntMaze HDF5 is downloaded from a local server.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calql.cli import main
from calql.config import RewardSpec, TaskSpec, get_task, load_config
from calql.data.format import Dataset, load_dataset
from calql.data.label import label_dataset
from calql.data.preprocess import preprocess_dataset
from calql.data.sources import fetch_dataset
from calql.data.sources.awac_npy import load_pickled_npy
from calql.data.sources.d4rl import lookup
from calql.envs.make import make_env
from tests._sources_helpers import http_server
from tests.paper_data import (
    ADROIT,
    ADROIT_DIR,
    ALL_TASKS,
    D4RL_NAME,
    KITCHEN_TASKS,
    Sizes,
    build_paper_data,
    paper_tasks,
)

GAMMA = 0.99
#: AntMaze/Adroit MC return of a trajectory that never succeeds: r_neg / (1 - gamma) = -5 / 0.01.
FAILURE_RETURN = -500.0


@pytest.fixture(scope="module")
def paper_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paper-data")
    build_paper_data(root, seed=0)
    return root


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, paper_root: Path) -> Path:
    """The Minari root of the built data; any Hugging Face access fails at once."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(paper_root / "minari"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return paper_root


def trajectories(data: Dataset) -> list[slice]:
    """Slices of the labeled data's trajectories (they end at terminals and timeouts)."""
    ends = np.flatnonzero(data.terminals | data.timeouts)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [slice(int(s), int(e) + 1) for s, e in zip(starts, ends, strict=True)]


def run_cli(config: Path, task: str, out: Path) -> Dataset:
    raw, labeled = out / f"{task}.raw.hdf5", out / f"{task}.hdf5"
    assert main(["-q", "dataset", "--config", str(config), "--task", task, "--out", str(raw)]) == 0
    args = ["-q", "label", "--config", str(config), "--task", task, "--dataset", str(raw), "--out", str(labeled)]
    assert main(args) == 0
    return load_dataset(labeled)


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize("task", ALL_TASKS)
def test_files_are_under_the_paper_ids(paper_root: Path, task: str) -> None:
    source = paper_tasks()[task]["source"]
    if source["kind"] == "minari":
        folder = paper_root / "minari" / source["id"] / "data"
        assert (folder / "main_data.hdf5").is_file() and (folder / "metadata.json").is_file()
    else:
        for key in ("expert", "bc"):
            assert (paper_root / ADROIT_DIR / Path(source[key]).name).is_file()
            assert Path(source[key]).parent.as_posix() == "data/adroit-binary/offpolicy_hand_data"


def test_minari_metadata_mirror_the_real_datasets(offline: Path) -> None:
    import minari

    ant = minari.load_dataset("D4RL/antmaze/large-diverse-v1")
    spec = ant.spec.env_spec
    assert spec.id == "AntMaze_Large_Diverse_GR-v4" and spec.max_episode_steps == 1000
    assert spec.kwargs["continuing_task"] is True and spec.kwargs["reset_target"] is False
    eval_map = ant.storage.metadata["eval_env_spec"]
    assert '"r"' in eval_map and '"g"' in eval_map
    ep = next(ant.iterate_episodes())
    assert {k: ep.observations[k].shape[1] for k in ep.observations} == {
        "achieved_goal": 2,
        "desired_goal": 2,
        "observation": 27,
    }
    assert ep.observations["observation"].dtype == np.float64 and ep.actions.dtype == np.float32
    assert sorted(ep.infos) == ["goal", "qpos", "qvel", "success"] and ep.infos["qpos"].shape[1] == 15
    assert not ep.terminations.any() and ep.truncations[-1]

    kitchen = minari.load_dataset("D4RL/kitchen/complete-v2")
    spec = kitchen.spec.env_spec
    assert (spec.id, spec.max_episode_steps) == ("FrankaKitchen-v1", 280)
    assert spec.kwargs["remove_task_when_completed"] is False
    assert spec.kwargs["tasks_to_complete"] == KITCHEN_TASKS["kitchen-complete"][0]
    assert "eval_env_spec" not in kitchen.storage.metadata
    ep = next(kitchen.iterate_episodes())
    assert ep.observations["observation"].shape[1] == 59 and sorted(ep.observations["achieved_goal"]) == sorted(
        KITCHEN_TASKS["kitchen-complete"][0]
    )


@pytest.mark.parametrize("task", list(ADROIT))
def test_awac_files_have_the_official_structure(paper_root: Path, task: str) -> None:
    env_id, expert_name, bc_name, steps = ADROIT[task]
    obs_dim, act_dim = {"pen-binary": (45, 24), "door-binary": (39, 28), "relocate-binary": (39, 30)}[task]
    expert = load_pickled_npy(paper_root / ADROIT_DIR / expert_name)
    traj = expert[0]
    assert len(traj["observations"]) == steps and traj["observations"][0]["state_observation"].shape == (obs_dim,)
    assert len(traj["rewards"]) == steps + 1 and traj["terminals"].shape == (steps,)
    assert traj["actions"].shape == (steps, act_dim) and "goal_achieved" in traj["env_infos"][0]
    assert set(np.unique(traj["rewards"][:-1])) == {-1.0, 0.0}
    bc = load_pickled_npy(paper_root / ADROIT_DIR / bc_name)[0]
    assert bc["observations"].shape == (steps, obs_dim) and bc["rewards"].shape == (steps, 1)
    assert bc["terminals"].shape == (steps, 1)
    np.testing.assert_array_equal(bc["env_infos"]["goal_achieved"], bc["rewards"][:, 0] == 0)


def test_output_is_deterministic_given_the_seed(tmp_path: Path) -> None:
    sizes = Sizes(adroit_trajectories=2, antmaze_episodes=2, antmaze_at_goal=1, antmaze_steps=30)
    for out in ("a", "b"):
        build_paper_data(tmp_path / out, ["door-binary"], seed=3, sizes=sizes)
    first, second = (load_pickled_npy(tmp_path / o / ADROIT_DIR / "door_bc_sparse4.npy") for o in "ab")
    for key in ("observations", "actions", "rewards"):
        np.testing.assert_array_equal(first[1][key], second[1][key])


# ----------------------------------------------------------------------------- through calql
def check_conventions(task: TaskSpec, data: Dataset) -> None:
    """The official convention of the task's domain holds in the labeled data."""
    parts = trajectories(data)
    if task.domain == "kitchen":
        assert data.meta["conventions"]["kitchen rewards found"] == "cumulative"
        assert data.meta["conventions"]["conversions"] == ["none"]
        assert set(np.unique(data.rewards)) == {0, 1, 2, 3, 4}  # episode k completes k sub-tasks
        assert all(np.all(np.diff(data.rewards[p]) >= 0) for p in parts)  # counts never drop here
        return
    success = data.rewards != task.reward.negative_reward
    assert success.any() and not data.meta["conventions"]["success steps not terminal"]
    np.testing.assert_array_equal(data.terminals, success)  # every success step is a terminal
    assert set(np.unique(data.train_rewards)) == {-5.0, 5.0}
    np.testing.assert_allclose(data.mc_returns[data.terminals], 5.0)
    failed = [p for p in parts if not success[p].any()]
    if task.domain == "antmaze":
        assert failed, "the AntMaze data keep trajectories that never reach the goal"
        assert any("continuing_task=True" in c for c in data.meta["conventions"]["conversions"])
    for p in failed:
        np.testing.assert_allclose(data.mc_returns[p], FAILURE_RETURN, rtol=1e-6)


@pytest.mark.parametrize("task_name", ALL_TASKS)
def test_dataset_and_label_commands_read_the_paper_data(offline: Path, task_name: str, tmp_path: Path) -> None:
    config_path = offline / "paper.yaml"
    task = get_task(load_config(config_path), task_name)
    data = run_cli(config_path, task_name, tmp_path)
    assert data.is_labeled and data.size > 0
    check_conventions(task, data)
    env = make_env(task)
    assert data.obs_dim == env.observation_space.shape[0] == sum(p["size"] for p in data.meta["obs_layout"])
    assert data.act_dim == env.action_space.shape[0]
    env.close()


def test_d4rl_source_downloads_the_antmaze_file_and_labels_it(paper_root: Path, tmp_path: Path) -> None:
    path = lookup(D4RL_NAME)["path"]
    with http_server(paper_root / "d4rl") as (url, requests):
        task = TaskSpec(
            name="antmaze-medium-diverse-d4rl",
            domain="antmaze",
            env_id="AntMaze_Medium_Diverse_GR-v5",
            source={"kind": "d4rl", "name": D4RL_NAME, "base_url": url},
            env_kwargs={"include_cfrc_ext_in_observation": False},
            obs_keys=("achieved_goal", "observation"),
            reward=RewardSpec(scale=10.0, bias=-5.0, sparse=True, negative_reward=0.0),
        )
        raw = fetch_dataset(task, tmp_path / "cache")
        assert requests == [f"/{path}"] and raw.meta["source"]["downloaded"]
        fetch_dataset(task, tmp_path / "cache")  # cached: no second request
        assert len(requests) == 1
    assert raw.meta["next_observations"] == "synthesized" and raw.meta["conversion"]["dropped_rows"] == 3
    data = label_dataset(preprocess_dataset(raw, task), task, progress=False)
    assert data.meta["conventions"]["conversions"] == ["none"]  # D4RL v2: success steps are terminals
    check = {**data.meta["conventions"]}
    assert check["success steps"] > 0 and check["success steps not terminal"] == 0
    failed = [p for p in trajectories(data) if not data.terminals[p].any()]
    assert failed and all(np.allclose(data.mc_returns[p], FAILURE_RETURN) for p in failed)
    env = make_env(task)
    assert data.obs_dim == env.observation_space.shape[0] == 29
    env.close()
