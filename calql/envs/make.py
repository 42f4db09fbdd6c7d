"""Make the online environment of a task: the same observation layout as its dataset.

One function, :func:`make_env`, builds every environment the training loops use (fine-tuning
rollouts and evaluation). The returned env:

- has a flat float32 ``Box`` observation, built from the task's ``obs_keys`` exactly as the
  dataset was flattened (``env.obs_layout`` holds the layout for :func:`check_layout`);
- terminates on success (mazes: ``continuing_task=False``, as D4RL's AntMaze ``eval=True`` env;
  Adroit: gymnasium-robotics never terminates, so the wrapper ends the episode at the first
  success step, as the official ``sampler.py`` sets ``done=True`` on ``goal_achieved``) and
  reports ``info["success"]`` for every domain;
- resets to the task's fixed start and goal cells when the task defines them (AntMaze-style
  evaluation), otherwise to the environment's own random start/goal;
- is capped at ``max_episode_steps`` (truncation, never a terminal) and returns raw rewards
  in the paper's convention for its domain (:func:`domain_reward`): mazes 1 at the goal else 0;
  Adroit binary 0 on success else -1 (the paper's ``*-binary-v0`` envs); Kitchen the cumulative
  number of solved sub-tasks (the official code's D4RL fork), without termination on completion.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from calql.config import TaskSpec
from calql.envs.layout import Layout, check_layout, flatten_obs, layout_of, layout_size

_registered = False
#: Domains whose environment does not end the episode at success but the official code does:
#: Adroit (official JaxCQL/sampler.py: ``if env_infos['goal_achieved']: done = True``).
SUCCESS_TERMINATES = frozenset({"adroit"})


def register_envs() -> None:
    """Register gymnasium-robotics environments once per process."""
    global _registered
    if not _registered:
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
        _registered = True


def is_maze(env_id: str) -> bool:
    return env_id.startswith(("PointMaze", "AntMaze"))


def ends_at_success(task: TaskSpec) -> bool:
    """Whether an episode of ``task`` ends at its first success (mazes, Adroit); Kitchen runs to the cap."""
    return is_maze(task.env_id) or task.domain in SUCCESS_TERMINATES


def default_env_kwargs(task: TaskSpec) -> dict[str, Any]:
    """Kwargs that give episodic success termination; the task's own kwargs win."""
    kwargs: dict[str, Any] = {}
    if is_maze(task.env_id):
        kwargs["continuing_task"] = False  # terminate at the goal (episodic success)
        kwargs["reset_target"] = False
    if task.domain == "kitchen":
        kwargs["terminate_on_tasks_completed"] = False  # D4RL fork of the official code
    kwargs.update(task.env_kwargs)
    return kwargs


def domain_reward(domain: str, reward: float, info: dict[str, Any]) -> float:
    """The raw reward in the paper's convention for ``domain`` (see module docstring)."""
    if domain == "adroit":
        return 0.0 if info["success"] else -1.0
    if domain == "kitchen" and "episode_task_completions" in info:
        return float(len(info["episode_task_completions"]))
    return float(reward)


def _success(domain: str, info: dict[str, Any]) -> bool:
    if domain == "kitchen" and "tasks_to_complete" in info:
        return len(info["tasks_to_complete"]) == 0
    return bool(info.get("success", info.get("goal_achieved", False)))


class FlatTaskEnv(gym.Wrapper):
    """Flatten observations, pin start/goal, and expose ``info['success']``."""

    def __init__(
        self,
        env: gym.Env,
        obs_keys: tuple[str, ...] | None,
        reset_options: dict | None,
        domain: str = "pointmaze",
    ):
        super().__init__(env)
        self.domain = domain
        self.obs_keys = obs_keys
        self.reset_options = reset_options
        self.obs_layout: Layout = layout_of(env.observation_space, obs_keys)
        n = layout_size(self.obs_layout)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # type: ignore[override]
        if options is None and self.reset_options:
            options = {k: np.asarray(v) for k, v in self.reset_options.items()}
        obs, info = self.env.reset(seed=seed, options=options)
        info["success"] = bool(info.get("success", False))
        return flatten_obs(obs, self.obs_keys), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["success"] = _success(self.domain, info)
        reward = domain_reward(self.domain, float(reward), info)
        terminated = bool(terminated) or (self.domain in SUCCESS_TERMINATES and info["success"])
        return flatten_obs(obs, self.obs_keys), reward, terminated, bool(truncated), info


def make_env(
    task: TaskSpec,
    seed: int | None = None,
    evaluation: bool = True,
    dataset_layout: Layout | None = None,
) -> FlatTaskEnv:
    """Build the task's environment; with ``dataset_layout`` the layouts must agree.

    ``evaluation`` is kept for symmetry with data collection: fine-tuning and evaluation both
    use the fixed start/goal of the task (as the official code, which fine-tunes in the eval env).
    The env is seeded by its first ``reset(seed=...)``; ``seed`` here seeds the action space.
    """
    del evaluation  # same env for rollouts and evaluation (official Cal-QL); documented above
    register_envs()
    make_kwargs = default_env_kwargs(task)
    if task.max_episode_steps is not None:
        make_kwargs["max_episode_steps"] = task.max_episode_steps
    env = gym.make(task.env_id, **make_kwargs)
    wrapped = FlatTaskEnv(env, task.obs_keys, task.eval_reset, task.domain)
    check_layout(dataset_layout, wrapped.obs_layout)
    if seed is not None:
        wrapped.action_space.seed(seed)
    return wrapped


def env_layout(task: TaskSpec) -> Layout:
    """The observation layout of the task's environment (builds and closes one env)."""
    env = make_env(task)
    try:
        return env.obs_layout
    finally:
        env.close()
