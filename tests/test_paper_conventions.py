"""The paper tasks follow the official data and environment conventions, on data shaped like the
real files (made here; no network): Minari's continuing-task AntMaze, Kitchen rewards, the
official Adroit-binary .npy pickles and online Adroit episodes, and the pinned score references.

Each comparison is against a hand port of the official code (nakamotoo/Cal-QL @ ac6eafe,
``JaxCQL/replay_buffer.py`` and ``JaxCQL/sampler.py``; Kitchen from branch dev/add-kitchen).
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from calql.agents import config_methods
from calql.cli import main
from calql.config import RewardSpec, TaskSpec, get_task, load_config
from calql.data.format import Dataset, save_dataset
from calql.data.label import label_dataset
from calql.data.mc_returns import mc_returns_for_episode
from calql.data.preprocess import preprocess_dataset
from calql.data.sources import fetch_dataset
from calql.data.sources.awac_npy import load_pickled_npy
from calql.envs.make import FlatTaskEnv, make_env
from calql.errors import DatasetError
from calql.training.evaluation import EvalEnvs, evaluate, run_episode, score_spec
from calql.training.resolve import resolve_run_config
from tests._sources_helpers import minari_root_with

REPO = Path(__file__).resolve().parents[1]
GAMMA = 0.99
ANTMAZE_REWARD = RewardSpec(scale=10.0, bias=-5.0, sparse=True, negative_reward=0.0)
ADROIT_REWARD = RewardSpec(scale=10.0, bias=5.0, sparse=True, negative_reward=-1.0)
KITCHEN_REWARD = RewardSpec(scale=1.0, bias=0.0, sparse=False, infinite_horizon=True)


# ----------------------------------------------------------------------------- official ports
def official_calc_return_to_go(rewards, terminals, gamma, reward_neg, is_sparse_reward, infinite_horizon=False):
    """``calc_return_to_go`` (dev/add-kitchen signature; main = infinite_horizon False), with the
    env-name lookup of ``reward_neg`` replaced by the argument."""
    if len(rewards) == 0:
        return np.array([])
    if is_sparse_reward and np.all(np.array(rewards) == reward_neg):
        return_to_go = [float(reward_neg / (1 - gamma))] * len(rewards)
    else:
        return_to_go = [0] * len(rewards)
        prev_return = 0 if not infinite_horizon else float(rewards[-1] / (1 - gamma))
        for i in range(len(rewards)):
            return_to_go[-i - 1] = rewards[-i - 1] + gamma * prev_return * (1 - terminals[-i - 1])
            prev_return = return_to_go[-i - 1]
    return np.array(return_to_go, dtype=np.float32)


def official_qlearning_dataset_and_calc_mc(dataset, reward_scale, reward_bias, gamma, terminate_on_end):
    """``qlearning_dataset_and_calc_mc`` on a D4RL-style dict (AntMaze: sparse, r_neg = 0 * scale + bias)."""
    n = dataset["rewards"].shape[0]
    data_, episodes = {}, []
    episode_step = 0
    for i in range(n):
        done_bool = bool(dataset["terminals"][i])
        final_timestep = dataset["timeouts"][i]
        if (not terminate_on_end) and final_timestep or i == n - 1:
            pass
        else:
            for k in ("observations", "next_observations", "actions", "rewards", "terminals"):
                data_.setdefault(k, []).append(dataset[k][i])
            episode_step += 1
        if (done_bool or final_timestep) and episode_step > 0:
            episode_step = 0
            ep = {k: np.array(v) for k, v in data_.items()}
            ep["rewards"] = ep["rewards"] * reward_scale + reward_bias
            ep["mc_returns"] = official_calc_return_to_go(
                ep["rewards"], ep["terminals"], gamma, 0.0 * reward_scale + reward_bias, True
            )
            episodes.append(ep)
            data_ = {}
    return {k: np.concatenate([ep[k] for ep in episodes]) for k in episodes[0]}


def official_get_hand_dataset(expert_path, bc_path, gamma, reward_scale, reward_bias):
    """``get_hand_dataset_with_mc_calculation`` with the two paths as arguments (pos_ind = -1,
    no action clipping), on ``np.load(..., allow_pickle=True)`` as the official code reads them."""

    def truncate_traj(dataset, i, end_index):
        observations = np.array(dataset[i]["observations"])[:end_index]
        next_observations = np.array(dataset[i]["next_observations"])[:end_index]
        rewards = dataset[i]["rewards"][:end_index]
        dones = rewards == 0
        rewards = rewards * reward_scale + reward_bias
        actions = np.array(dataset[i]["actions"])[:end_index]
        mc_returns = official_calc_return_to_go(rewards, dones, gamma, -1.0 * reward_scale + reward_bias, True)
        return dict(
            observations=observations,
            next_observations=next_observations,
            actions=actions,
            rewards=rewards,
            dones=dones,
            mc_returns=mc_returns,
        )

    dataset_list, dataset_bc_list = [], []
    dataset = np.load(expert_path, allow_pickle=True)
    for i in range(len(dataset)):
        n = len(dataset[i]["observations"])
        for j in range(len(dataset[i]["observations"])):
            dataset[i]["observations"][j] = dataset[i]["observations"][j]["state_observation"]
            dataset[i]["next_observations"][j] = dataset[i]["next_observations"][j]["state_observation"]
        if np.array(dataset[i]["rewards"]).shape != np.array(dataset[i]["terminals"]).shape:
            dataset[i]["rewards"] = dataset[i]["rewards"][:n]
        assert np.array(dataset[i]["rewards"]).shape == np.array(dataset[i]["terminals"]).shape
        dataset[i].pop("terminals", None)
        if 0 not in dataset[i]["rewards"]:
            continue
        trunc_ind = np.where(dataset[i]["rewards"] == 0)[0][-1] + 1
        dataset_list.append(truncate_traj(dataset, i, trunc_ind))
    dataset_bc = np.load(bc_path, allow_pickle=True)
    for i in range(len(dataset_bc)):
        dataset_bc[i]["rewards"] = dataset_bc[i]["rewards"].squeeze()
        dataset_bc[i]["dones"] = dataset_bc[i]["terminals"].squeeze()
        dataset_bc[i].pop("terminals", None)
        if 0 not in dataset_bc[i]["rewards"]:
            continue
        trunc_ind = np.where(dataset_bc[i]["rewards"] == 0)[0][-1] + 1
        dataset_bc_list.append(truncate_traj(dataset_bc, i, trunc_ind))
    trajs = dataset_list + dataset_bc_list
    return {key: np.concatenate([t[key] for t in trajs], axis=0).astype(np.float32) for key in trajs[0]}


def labeled(dataset: Dataset, task: TaskSpec) -> Dataset:
    return label_dataset(preprocess_dataset(dataset, task), task, progress=False)


# ----------------------------------------------------------------------------- AntMaze (Minari)
#: Continuing-task episodes as Minari recorded them (no terminations, truncated at the end):
#: reaches the goal, stays, leaves and returns; succeeds once then wanders off; never succeeds.
ANTMAZE_EPISODES = ([0, 0, 0, 1, 1, 1, 0, 0, 1, 1], [0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0])
ANTMAZE_ID = "test/antmaze/medium-play-v1"


def build_minari_antmaze(dataset_id: str, episodes: tuple[list[int], ...], seed: int = 0) -> None:
    """A Minari dataset on disk (MINARI_DATASETS_PATH) with the layout of D4RL/antmaze/*-v1: dict
    observations (achieved_goal 2, observation 27, desired_goal 2), an AntMaze_Medium-v4
    continuing-task env spec, all terminations false, each episode truncated at its end."""
    import gymnasium_robotics
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    gym.register_envs(gymnasium_robotics)
    env = gym.make("AntMaze_Medium-v4", continuing_task=True, reset_target=False)
    rng = np.random.default_rng(seed)
    buffers = []
    for k, rewards in enumerate(episodes):
        t = len(rewards)
        obs = {key: rng.normal(size=(t + 1, *space.shape)) for key, space in env.observation_space.spaces.items()}
        buffers.append(
            EpisodeBuffer(
                id=k,
                seed=seed + k,
                observations=obs,
                actions=rng.uniform(-1, 1, size=(t, 8)),
                rewards=np.asarray(rewards, dtype=np.float64),
                terminations=np.zeros(t, dtype=bool),
                truncations=np.arange(t) == t - 1,
                infos={},
            )
        )
    minari.create_dataset_from_buffers(dataset_id=dataset_id, buffer=buffers, env=env, algorithm_name="scripted")
    env.close()


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return minari_root_with(tmp_path_factory, lambda: build_minari_antmaze(ANTMAZE_ID, ANTMAZE_EPISODES))


def antmaze_task(domain: str = "antmaze") -> TaskSpec:
    return TaskSpec(
        name="antmaze-medium-play",
        domain=domain,
        env_id="AntMaze_Medium-v5",
        source={"kind": "minari", "id": ANTMAZE_ID, "download": False},
        env_kwargs={"include_cfrc_ext_in_observation": False},
        obs_keys=("achieved_goal", "observation", "desired_goal"),
        reward=ANTMAZE_REWARD,
    )


def test_minari_continuing_antmaze_is_labeled_as_official_d4rl_v2(
    minari_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    raw = fetch_dataset(antmaze_task(), tmp_path)
    assert not raw.terminals.any() and raw.meta["env_kwargs"]["continuing_task"] is True
    out = labeled(raw, antmaze_task())

    # the official convention: D4RL v2 marks a terminal at each reward-1 step
    d4rl_v2 = {
        "observations": raw.observations,
        "next_observations": raw.next_observations,
        "actions": raw.actions,
        "rewards": raw.rewards,
        "terminals": raw.rewards == 1.0,
        "timeouts": raw.timeouts,
    }
    # Minari stores true next observations, so no row has to be dropped at a timeout
    # (terminate_on_end=True); the official loop still drops the file's very last row, which
    # belongs to the failed last episode (G = -500 either way).
    ref = official_qlearning_dataset_and_calc_mc(d4rl_v2, 10.0, -5.0, GAMMA, terminate_on_end=True)
    n = len(ref["rewards"])
    assert n == out.size - 1
    np.testing.assert_array_equal(out.observations[:n], ref["observations"])
    np.testing.assert_array_equal(out.next_observations[:n], ref["next_observations"])
    np.testing.assert_array_equal(out.actions[:n], ref["actions"])
    np.testing.assert_array_equal(out.terminals[:n], ref["terminals"])
    np.testing.assert_array_equal(out.train_rewards[:n], ref["rewards"])
    np.testing.assert_allclose(out.mc_returns[:n], ref["mc_returns"], rtol=1e-6)
    assert out.mc_returns[-1] == pytest.approx(-500.0)

    # hand-computed: +5 at every goal step, -500 for the never-successful parts
    g = GAMMA
    np.testing.assert_allclose(
        out.mc_returns[:10],
        [
            -5 + g * (-5 + g * (-5 + g * 5)),
            -5 + g * (-5 + g * 5),
            -5 + g * 5,
            5,
            5,
            5,
            -5 + g * (-5 + g * 5),
            -5 + g * 5,
            5,
            5,
        ],
        rtol=1e-6,
    )
    np.testing.assert_allclose(out.mc_returns[10:], [-5 + g * 5, 5, -500, -500, -500, -500, *[-500] * 5], rtol=1e-6)
    conv = out.meta["conventions"]
    assert conv["success steps"] == 6 and conv["success steps not terminal"] == 0
    assert conv["conversions"] == [
        "6 non-terminal success steps marked terminal (recorded in AntMaze_Medium-v4 with continuing_task=True)"
    ]
    assert out.meta["preprocess"]["switches"]["success_is_terminal"]["origin"].startswith("official antmaze")


def test_continuing_task_data_are_refused_where_no_convention_converts_them(
    minari_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    task = antmaze_task(domain="custom")
    raw = fetch_dataset(task, tmp_path)
    with pytest.raises(
        DatasetError,
        match=r"task 'antmaze-medium-play' \(domain custom\): the data have 6 success "
        r"steps .*continuing_task=True.*preprocess.success_is_terminal: true",
    ):
        labeled(raw, task)


# ----------------------------------------------------------------------------- Kitchen
def kitchen_dataset(rewards_per_episode: list[list[float]]) -> Dataset:
    rewards = np.concatenate([np.asarray(r, dtype=np.float32) for r in rewards_per_episode])
    n = len(rewards)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[np.cumsum([len(r) for r in rewards_per_episode]) - 1] = True
    obs = np.arange(n + 1, dtype=np.float32)[:, None]
    return Dataset(
        observations=obs[:-1],
        actions=np.zeros((n, 9)),
        rewards=rewards,
        terminals=np.zeros(n),
        timeouts=timeouts,
        next_observations=obs[1:],
    )


def kitchen_task(domain: str = "kitchen", **preprocess: bool) -> TaskSpec:
    return TaskSpec(
        name="kitchen-mixed",
        domain=domain,
        env_id="FrankaKitchen-v1",
        source={"kind": "minari"},
        reward=KITCHEN_REWARD,
        preprocess=preprocess,
    )


#: gymnasium-robotics with remove_task_when_completed=True: 1 at the step a sub-task completes.
PER_STEP = [[0, 1, 0, 0, 1, 0, 1, 0], [0, 0, 1, 0]]
CUMULATIVE = [[0, 1, 1, 1, 2, 2, 3, 3], [0, 0, 1, 1]]


def test_kitchen_per_step_completions_become_the_official_cumulative_count() -> None:
    out = labeled(kitchen_dataset(PER_STEP), kitchen_task())
    np.testing.assert_array_equal(out.rewards, np.concatenate(CUMULATIVE))
    ref = np.concatenate(
        [
            official_calc_return_to_go(
                np.asarray(r, dtype=np.float64), np.zeros(len(r)), GAMMA, None, False, infinite_horizon=True
            )
            for r in CUMULATIVE
        ]
    )
    np.testing.assert_allclose(out.mc_returns, ref, rtol=1e-6)
    assert out.meta["conventions"]["conversions"] == [
        "per-step sub-task completions -> cumulative count per trajectory"
    ]
    assert out.meta["conventions"]["last-step rewards of trajectories"] == "1, 3"


def test_conventions_command_writes_one_table_per_labeled_file(tmp_path: Path) -> None:
    out = labeled(kitchen_dataset(PER_STEP), kitchen_task())
    save_dataset(out, tmp_path / "kitchen-mixed.hdf5")
    assert (
        main(
            [
                "-q",
                "conventions",
                "--datasets",
                str(tmp_path / "kitchen-mixed.hdf5"),
                "--out-dir",
                str(tmp_path / "conv"),
            ]
        )
        == 0
    )
    lines = (tmp_path / "conv" / "kitchen-mixed.md").read_text().splitlines()
    assert lines[:4] == ["# Data conventions: kitchen-mixed", "", "| item | value |", "|---|---|"]
    assert "| raw reward values | 0, 1, 2, 3 |" in lines
    # infinite-horizon tail: max 3 / (1 - 0.99) = 300; min at the start of [0, 0, 1, 1]: 0.99^2 * 100
    assert any(line.startswith("| MC return range | [98.01, 300.00] (mean ") for line in lines)
    assert "| conversions | per-step sub-task completions -> cumulative count per trajectory |" in lines


def test_kitchen_cumulative_data_pass_unchanged_and_per_step_data_are_refused_elsewhere() -> None:
    data = kitchen_dataset(CUMULATIVE)  # Minari D4RL/kitchen/*-v2: remove_task_when_completed=False
    out = labeled(data, kitchen_task())
    np.testing.assert_array_equal(out.rewards, data.rewards)
    assert out.meta["conventions"]["conversions"] == ["none"]
    assert out.meta["conventions"]["kitchen rewards found"] == "cumulative"
    with pytest.raises(
        DatasetError,
        match=r"task 'kitchen-mixed' \(domain custom\): the data reward the "
        r"sub-tasks completed in each step \(100% .*cumulative_rewards: true",
    ):
        preprocess_dataset(kitchen_dataset(PER_STEP), kitchen_task("custom"))
    converted = preprocess_dataset(kitchen_dataset(PER_STEP), kitchen_task("custom", cumulative_rewards=True))
    np.testing.assert_array_equal(converted.rewards, np.concatenate(CUMULATIVE))


# ----------------------------------------------------------------------------- Adroit .npy files
def _traj(
    rng: np.random.Generator, rewards: list[float], expert: bool, obs_dim: int = 45, act_dim: int = 24
) -> dict[str, Any]:
    """One trajectory as the AWAC pen files hold it (T transitions; pen: 45-dim state, 24 actions)."""
    t = len(rewards)
    states = rng.normal(size=(t + 1, obs_dim))
    if expert:  # dict observations; rewards one longer than the observations; terminals of length T
        return {
            "observations": [{"state_observation": s, "image": np.zeros(2)} for s in states[:-1]],
            "next_observations": [{"state_observation": s} for s in states[1:]],
            "actions": rng.uniform(-1, 1, size=(t, act_dim)),
            "rewards": np.asarray([*rewards, 0.0]),
            "terminals": np.zeros(t, dtype=bool),
            "agent_infos": [{} for _ in range(t)],
            "env_infos": [{"goal_achieved": np.bool_(r == 0)} for r in rewards],
        }
    return {
        "observations": states[:-1],
        "next_observations": states[1:],
        "actions": rng.uniform(-1, 1, size=(t, act_dim)),
        "rewards": np.asarray(rewards)[:, None],
        "terminals": np.zeros((t, 1), dtype=bool),
        "agent_infos": {"mean": np.zeros((t, act_dim))},
        "env_infos": {"goal_achieved": np.asarray(rewards) == 0},
    }


def write_npy(path: Path, trajectories: list[dict[str, Any]]) -> Path:
    arr = np.empty(len(trajectories), dtype=object)
    arr[:] = trajectories
    np.save(path, arr, allow_pickle=True)
    return path


@pytest.fixture
def awac_files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    # the extra trailing reward of the expert files is a 0: kept, it would save the failed demo
    expert = [_traj(rng, [-1, -1, 0, 0, -1], True), _traj(rng, [-1, -1, -1], True), _traj(rng, [-1, 0, -1, 0], True)]
    bc = [_traj(rng, [-1, -1, -1, -1], False), _traj(rng, [-1, 0, 0], False), _traj(rng, [0, -1, -1, 0, -1, -1], False)]
    return write_npy(tmp_path / "pen2_sparse.npy", expert), write_npy(tmp_path / "pen_bc_sparse4.npy", bc)


def adroit_task(expert: Path, bc: Path) -> TaskSpec:
    return TaskSpec(
        name="pen-binary",
        domain="adroit",
        env_id="AdroitHandPen-v1",
        source={"kind": "awac_npy", "expert": str(expert), "bc": str(bc)},
        reward=ADROIT_REWARD,
    )


def test_awac_npy_transitions_equal_the_official_loader(awac_files: tuple[Path, Path], tmp_path: Path) -> None:
    expert, bc = awac_files
    task = adroit_task(expert, bc)
    out = labeled(fetch_dataset(task, tmp_path), task)
    ref = official_get_hand_dataset(expert, bc, GAMMA, 10.0, 5.0)
    assert out.size == len(ref["rewards"]) == 4 + 4 + 3 + 4  # expert 1, 3; bc 2, 3 (the rest never succeed)
    for ours, key in (
        ("observations", "observations"),
        ("next_observations", "next_observations"),
        ("actions", "actions"),
        ("train_rewards", "rewards"),
        ("terminals", "dones"),
        ("mc_returns", "mc_returns"),
    ):
        np.testing.assert_allclose(getattr(out, ours), ref[key], rtol=1e-6, err_msg=key)
    conv = out.meta["conventions"]
    assert conv["dropped trajectories"] == 2 and conv["truncated trajectories"] == 2
    assert conv["success steps not terminal"] == 0 and conv["raw reward values"] == "-1, 0"
    assert out.meta["obs_layout"] == [{"key": "obs", "size": 45}]  # AdroitHandPen-v1's layout


def test_a_pickle_with_any_other_class_is_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):  # what a malicious file would do on np.load(allow_pickle=True)
            return (print, ("pwned",))

    arr = np.empty(1, dtype=object)
    arr[0] = {"observations": Payload()}
    path = tmp_path / "evil.npy"
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(DatasetError, match=r"evil.npy: refusing to unpickle 'builtins.print'"):
        load_pickled_npy(path)
    arr[0] = {"observations": collections.OrderedDict(a=1)}  # harmless, but not on the list
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(DatasetError, match=r"refusing to unpickle 'collections.OrderedDict'"):
        load_pickled_npy(path)
    plain = tmp_path / "plain.npy"
    np.save(plain, np.arange(4.0))
    np.testing.assert_array_equal(load_pickled_npy(plain), np.arange(4.0))


def test_files_pickled_by_old_numpy_are_read(tmp_path: Path) -> None:
    """The AWAC files predate numpy 2: their pickles name ``numpy.core.multiarray``."""
    import pickle

    arr = np.empty(1, dtype=object)
    arr[0] = {"rewards": np.array([-1.0, 0.0]), "flag": np.bool_(True)}
    payload = pickle.dumps(arr, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in payload
    path = tmp_path / "old.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (1,)})
        f.write(payload)
    out = load_pickled_npy(path)
    np.testing.assert_array_equal(out[0]["rewards"], [-1.0, 0.0])
    assert out[0]["flag"] is np.True_


# ----------------------------------------------------------------------------- Adroit online
class _OpenDoorAt:
    """A scripted 'agent': zero actions, and at step ``k`` it opens the door of the real env."""

    def __init__(self, env: FlatTaskEnv, k: int):
        self.env, self.k, self.calls = env, k, 0

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if self.calls == self.k:
            door = self.env.unwrapped
            qpos = door.data.qpos.copy()
            qpos[door.door_hinge_addrs] = 1.5  # success: hinge angle >= 1.35
            door.set_state(qpos, door.data.qvel.copy())
        self.calls += 1
        return torch.zeros(1, self.env.action_space.shape[0])


def test_adroit_episode_ends_at_success_and_its_returns_are_official() -> None:
    task = TaskSpec(
        name="door-binary",
        domain="adroit",
        env_id="AdroitHandDoor-v1",
        source={"kind": "awac_npy"},
        max_episode_steps=200,
        reward=ADROIT_REWARD,
    )
    env = make_env(task, seed=0)
    ep = run_episode(env, _OpenDoorAt(env, 7), seed=0, deterministic=True, device=torch.device("cpu"))
    assert len(ep["rewards"]) == 8 and ep["success"]  # 200-step cap, ended at the success step
    np.testing.assert_array_equal(ep["terminals"], [False] * 7 + [True])
    np.testing.assert_array_equal(ep["rewards"], [-1.0] * 7 + [0.0])
    train_rewards, mc = mc_returns_for_episode(ep["rewards"], ep["terminals"], task.reward, GAMMA)
    # official sampler: rewards scaled, done=True at goal_achieved, calc_return_to_go of the episode
    ref = official_calc_return_to_go(ep["rewards"] * 10.0 + 5.0, ep["terminals"], GAMMA, -5.0, True)
    np.testing.assert_allclose(mc, ref, rtol=1e-6)
    assert mc[-1] == pytest.approx(5.0) and train_rewards[0] == -5.0
    env.close()


# ----------------------------------------------------------------------------- scores
class _Scripted(gym.Env):
    """An inner env whose episodes are fixed: rewards and infos by step."""

    observation_space = gym.spaces.Dict({"observation": gym.spaces.Box(-1, 1, (2,))})
    action_space = gym.spaces.Box(-1, 1, (2,))

    def __init__(self, steps: list[tuple[float, bool, dict[str, Any]]]):
        self.steps, self.t = steps, 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return {"observation": np.zeros(2)}, {}

    def step(self, action):
        reward, terminated, info = self.steps[self.t]
        self.t += 1
        return {"observation": np.zeros(2)}, reward, terminated, self.t == len(self.steps), dict(info)


class _Zero:
    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return torch.zeros(obs.shape[0], 2)


def paper_score(task_name: str, steps: list[tuple[float, bool, dict[str, Any]]]) -> float:
    config = load_config(REPO / "config" / "paper.yaml")
    run = resolve_run_config(config, task_name, "calql")
    # references pinned by the preset: the data source's own refs are never used
    spec = score_spec(run, {"ref_min_score": -3.0, "ref_max_score": 7.0})
    domain = get_task(config, task_name).domain
    envs = EvalEnvs(lambda: FlatTaskEnv(_Scripted(steps), ("observation",), None, domain))
    return evaluate(envs, _Zero(), 2, 0, "finetune", 0, spec, torch.device("cpu"))["score"]


@pytest.mark.parametrize("task_name", ["antmaze-medium-play", "antmaze-large-diverse"])
def test_antmaze_success_episode_scores_100(task_name: str) -> None:
    assert paper_score(task_name, [(0.0, False, {}), (0.0, False, {}), (1.0, True, {"success": True})]) == 100.0
    assert paper_score(task_name, [(0.0, False, {})] * 3) == 0.0


@pytest.mark.parametrize("task_name", ["kitchen-mixed", "kitchen-partial", "kitchen-complete"])
def test_kitchen_episode_with_three_subtasks_done_scores_75(task_name: str) -> None:
    done = ["microwave", "kettle", "light switch"]
    steps = [(0.0, False, {"episode_task_completions": done[:k], "tasks_to_complete": ["x"]}) for k in (0, 1, 3, 3)]
    assert paper_score(task_name, steps) == 75.0


def test_every_paper_task_pins_score_kind_and_references() -> None:
    config = load_config(REPO / "config" / "paper.yaml")
    kinds = {"antmaze": ("return", 0.0, 1.0), "kitchen": ("last_reward", 0.0, 4.0), "adroit": ("success", 0.0, 1.0)}
    for name, task in config["tasks"].items():
        for method in config_methods(config):
            run = resolve_run_config(config, name, method)
            assert (run["score"], run["ref_min"], run["ref_max"]) == kinds[task["domain"]], (name, method)
            if task["domain"] == "adroit" and method == "iql":
                assert (run["reward"]["scale"], run["reward"]["bias"]) == (1.0, 0.0)  # IQL-F: raw {-1, 0}
            if task["domain"] == "antmaze":
                assert task["source"]["id"].endswith("-v1")  # the Minari version served (pinned)
