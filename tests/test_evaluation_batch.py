"""Evaluation episodes stepped together (``run_episodes``) are the episodes run one at a time.

Batching only changes how many observations one policy call takes; each episode keeps its own
environment and reset seed. So the episodes, and the evaluation row, must not depend on the
batch size, on which other episodes share the batch, or on when those end.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from calql.agents import make_agent
from calql.config import TaskSpec
from calql.envs.make import make_env
from calql.training.evaluation import EvalEnvs, ScoreSpec, evaluate, run_episode, run_episodes
from tests.conftest import UMAZE_TASK

CPU = torch.device("cpu")


class _SeedLength(gym.Env):
    """An episode of ``3 + seed % 7`` steps whose observation is (seed, step, last action):
    episodes of one batch end at different steps, and each transition names its episode."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,))
    action_space = gym.spaces.Box(-1, 1, (1,))

    def reset(self, *, seed=None, options=None):
        self.seed_, self.t = int(seed), 0
        return np.array([self.seed_, 0.0, 0.0], dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.array([self.seed_, self.t, float(action[0])], dtype=np.float32)
        success = self.t == 2 and self.seed_ % 2 == 0
        done = self.t == 3 + self.seed_ % 7
        return obs, float(self.t), done and self.seed_ % 3 == 0, done and self.seed_ % 3 != 0, {"success": success}


class _RowPolicy:
    """Action = a function of the row's own observation (seed and step)."""

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return torch.tanh(0.1 * obs[:, :1] + 0.01 * obs[:, 1:2])


def _same_episode(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_batched_episodes_equal_single_episodes_of_other_lengths() -> None:
    seeds = [11, 4, 9, 30, 2, 17]  # lengths 7, 7, 5, 5, 5, 6; some terminate, some truncate
    together = run_episodes([_SeedLength() for _ in seeds], _RowPolicy(), seeds, True, CPU)
    for seed, episode in zip(seeds, together):
        alone = run_episode(_SeedLength(), _RowPolicy(), seed, True, CPU)
        _same_episode(episode, alone)
        assert len(episode["rewards"]) == 3 + seed % 7
        assert np.all(episode["observations"][:, 0] == seed)  # no transition of another episode
        assert episode["first_success"] == (1 if seed % 2 == 0 else -1)


@pytest.mark.parametrize("batch", [1, 2, 4, 25])
def test_evaluation_row_does_not_depend_on_the_batch(batch: int) -> None:
    spec = ScoreSpec("return", 0.0, 10.0)
    reference = evaluate(EvalEnvs(_SeedLength), _RowPolicy(), 5, 3, "finetune", 2, spec, CPU, batch=1)
    envs = EvalEnvs(_SeedLength)
    assert evaluate(envs, _RowPolicy(), 5, 3, "finetune", 2, spec, CPU, batch=batch) == reference
    assert len(envs.envs) == min(batch, 5)  # environments made only as needed, reused afterwards
    assert evaluate(envs, _RowPolicy(), 5, 3, "finetune", 2, spec, CPU, batch=batch) == reference


def test_point_maze_episodes_of_a_network_policy_match_one_at_a_time() -> None:
    """The real environment and an MLP policy: each episode's trajectory as run alone. Compared
    to float tolerance, not bitwise: whether a batched matrix product sums in the same order as a
    one-row product is up to the BLAS kernels of the CPU (equal bits on the machines we measured)."""
    torch.manual_seed(0)
    task_cfg = copy.deepcopy(UMAZE_TASK)
    task_cfg["env"]["max_episode_steps"] = 60
    task = TaskSpec.from_config("umaze", task_cfg)
    agent = make_agent("calql", 4, 2, None)
    seeds = [5, 6, 7, 8]
    together = run_episodes([make_env(task) for _ in seeds], agent, seeds, True, CPU)
    env = make_env(task)
    for seed, episode in zip(seeds, together):
        alone = run_episode(env, agent, seed, True, CPU)
        for key in ("observations", "actions", "next_observations"):
            np.testing.assert_allclose(episode[key], alone[key], rtol=0, atol=1e-5, err_msg=key)
        np.testing.assert_array_equal(episode["terminals"], alone["terminals"])
        assert episode["success"] == alone["success"]
    assert not np.allclose(together[0]["observations"], together[1]["observations"])  # seeds differ
