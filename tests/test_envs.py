"""Environment conventions per domain (rewards, success) and layouts."""

import numpy as np
import pytest

from calql.config import TaskSpec
from calql.envs.layout import check_layout, flatten_obs
from calql.envs.make import domain_reward, make_env
from calql.errors import EnvMismatchError


def test_domain_rewards_follow_the_paper():
    assert domain_reward("adroit", -0.1, {"success": False}) == -1.0  # binary Adroit: -1 / 0
    assert domain_reward("adroit", 10.0, {"success": True}) == 0.0
    # Kitchen (official D4RL fork): the cumulative number of solved sub-tasks
    assert domain_reward("kitchen", 1.0, {"episode_task_completions": ["kettle", "microwave"]}) == 2.0
    assert domain_reward("pointmaze", 1.0, {"success": True}) == 1.0


def test_flatten_obs_single_and_batched():
    obs = {"observation": np.arange(4.0), "desired_goal": np.array([9.0, 8.0]), "achieved_goal": np.zeros(2)}
    np.testing.assert_array_equal(flatten_obs(obs), [0, 1, 2, 3, 9, 8])
    np.testing.assert_array_equal(flatten_obs(obs, ["desired_goal"]), [9, 8])
    batched = {k: np.stack([v, v + 1]) for k, v in obs.items()}
    assert flatten_obs(batched, ["achieved_goal", "observation"]).shape == (2, 6)


def test_check_layout_messages():
    check_layout(None, [{"key": "obs", "size": 3}])  # no layout recorded: nothing to check
    with pytest.raises(EnvMismatchError, match="size 29.*size 31"):
        check_layout([{"key": "obs", "size": 29}], [{"key": "obs", "size": 31}])


def test_antmaze_layout_matches_d4rl_29_dims():
    task = TaskSpec(
        name="a",
        domain="antmaze",
        env_id="AntMaze_Medium_Diverse_GR-v5",
        source={"kind": "d4rl"},
        env_kwargs={"include_cfrc_ext_in_observation": False},
        obs_keys=("achieved_goal", "observation"),
    )
    env = make_env(task, seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (29,) and env.obs_layout[0] == {"key": "achieved_goal", "size": 2}
    _, r, term, trunc, info = env.step(env.action_space.sample())
    assert r == 0.0 and "success" in info
    env.close()


def test_unknown_obs_key():
    task = TaskSpec(
        name="p",
        domain="pointmaze",
        env_id="PointMaze_UMaze-v3",
        source={"kind": "generated"},
        obs_keys=("observaton",),
    )
    with pytest.raises(EnvMismatchError, match="observaton"):
        make_env(task)
