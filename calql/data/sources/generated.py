"""The embedded default source: PointMaze data from a scripted waypoint controller, offline.

In the spirit of D4RL's maze2d and AntMaze "diverse"/"play" datasets: each segment starts in a
random free cell, a noisy BFS+PD controller (or, for a ``random_share`` of segments, uniformly
random actions) drives toward waypoint goals that are re-drawn whenever one is reached
(``goals: diverse`` = any free cell, or a list of cells = "play"), and the segment ends with a
timeout after ``segment_length`` steps. Rewards are those of the *task*: sparse, 1 when the
point ends a step within 0.45 of the task's fixed goal (the env's own success radius), and, as
in AntMaze-v2, such a step is also a terminal (the data continue after it; labeling splits).

The normalized score of a success-terminated task is the success rate: reference returns are
0 (never reaches the goal) and 1 (reaches it). The returns of a random policy and of the
noise-free controller on the evaluation start/goal are measured and stored as well.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from calql.config import TaskSpec
from calql.data.format import Dataset
from calql.data.sources.meta import source_meta
from calql.data.waypoint_controller import WaypointController, free_cells
from calql.envs.layout import flatten_obs, layout_of
from calql.envs.make import default_env_kwargs, make_env, register_envs
from calql.errors import ConfigError
from calql.progress import progress as progress_bar

log = logging.getLogger(__name__)

#: Success radius of gymnasium-robotics mazes (reward 1 within this distance of the goal).
GOAL_RADIUS = 0.45
#: A waypoint counts as reached within this distance; then the next one is drawn.
WAYPOINT_RADIUS = 0.5
#: Episodes used to measure the random and controller reference returns.
REFERENCE_EPISODES = 10


def _check_task(task: TaskSpec) -> tuple[int, int]:
    if not task.env_id.startswith("PointMaze"):
        raise ConfigError(
            f"task '{task.name}': the 'generated' source makes PointMaze data only, "
            f"not '{task.env_id}' (use the d4rl, minari or file source)"
        )
    goal = (task.eval_reset or {}).get("goal_cell")
    if goal is None:
        raise ConfigError(
            f"task '{task.name}': the 'generated' source needs env.eval_reset.goal_cell "
            "(the fixed task goal its rewards refer to)"
        )
    return int(goal[0]), int(goal[1])


def _collection_env(task: TaskSpec) -> gym.Env:
    """The raw maze env (no time limit, never terminates) driven by the controller."""
    register_envs()
    kwargs = dict(task.env_kwargs)
    kwargs.update(continuing_task=True, reset_target=False)
    return gym.make(task.env_id, **kwargs).unwrapped


def _obs_dict(obs: dict[str, np.ndarray], goal_xy: np.ndarray) -> dict[str, np.ndarray]:
    """The observation as the evaluation env will show it: the desired goal is the task goal."""
    return {**obs, "desired_goal": goal_xy}


def collect(task: TaskSpec, progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Roll out the controller; returns D4RL-layout arrays and collection statistics."""
    cfg = task.source
    goal_cell = _check_task(task)
    n_total = int(cfg.get("n_transitions", 100_000))
    seg_len = int(cfg.get("segment_length", 1000))
    noise = float(cfg.get("action_noise", 0.5))
    random_share = float(cfg.get("random_share", 0.2))
    seed = int(cfg.get("seed", 0))
    rng = np.random.default_rng(seed)

    env = _collection_env(task)
    maze = env.maze
    cells = free_cells(maze.maze_map)
    goal_cells = cells if cfg.get("goals", "diverse") == "diverse" else [tuple(c) for c in cfg["goals"]]
    for c in [goal_cell, *goal_cells]:
        if tuple(c) not in set(cells):
            raise ConfigError(f"task '{task.name}': cell {list(c)} is a wall or outside the maze")
    ctrl = WaypointController(maze)
    goal_xy = maze.cell_rowcol_to_xy(np.asarray(goal_cell))
    cell_noise = 0.25 * maze.maze_size_scaling

    arrays: dict[str, list[Any]] = {k: [] for k in ("obs", "act", "rew", "term", "tout", "next")}
    n_random_segments = n_segments = 0
    env.reset(seed=seed)
    bar = progress_bar(
        total=n_total, desc=f"generate {task.name}", unit="step", **({} if progress else {"disable": True})
    )
    t = 0
    while t < n_total:
        start = cells[rng.integers(len(cells))]
        obs, _ = env.reset(options={"reset_cell": np.asarray(start), "goal_cell": np.asarray(goal_cell)})
        random_segment = rng.random() < random_share
        n_random_segments += int(random_segment)
        n_segments += 1

        def draw_waypoint() -> tuple[tuple[int, int], np.ndarray]:
            cell = tuple(goal_cells[rng.integers(len(goal_cells))])
            xy = maze.cell_rowcol_to_xy(np.asarray(cell)) + rng.uniform(-cell_noise, cell_noise, 2)
            return cell, xy

        wp_cell, wp_xy = draw_waypoint()
        for k in range(seg_len):
            pos, vel = obs["observation"][:2], obs["observation"][2:4]
            if random_segment:
                action = rng.uniform(-1.0, 1.0, 2)
            else:
                action = ctrl.action(pos, vel, wp_cell, wp_xy) + noise * rng.standard_normal(2)
            action = np.clip(action, -1.0, 1.0).astype(np.float32)
            next_obs, *_ = env.step(action)
            next_pos = next_obs["achieved_goal"]
            success = bool(np.linalg.norm(next_pos - goal_xy) <= GOAL_RADIUS)
            arrays["obs"].append(flatten_obs(_obs_dict(obs, goal_xy), task.obs_keys))
            arrays["act"].append(action)
            arrays["rew"].append(float(success))
            arrays["term"].append(success)
            arrays["tout"].append(k == seg_len - 1 or t == n_total - 1)
            arrays["next"].append(flatten_obs(_obs_dict(next_obs, goal_xy), task.obs_keys))
            if np.linalg.norm(next_pos - wp_xy) <= WAYPOINT_RADIUS:
                wp_cell, wp_xy = draw_waypoint()
            obs = next_obs
            t += 1
            bar.update(1)
            if t >= n_total:
                break
    bar.close()
    env.close()
    data = {
        "observations": np.asarray(arrays["obs"], dtype=np.float32),
        "actions": np.asarray(arrays["act"], dtype=np.float32),
        "rewards": np.asarray(arrays["rew"], dtype=np.float32),
        "terminals": np.asarray(arrays["term"], dtype=bool),
        "timeouts": np.asarray(arrays["tout"], dtype=bool),
        "next_observations": np.asarray(arrays["next"], dtype=np.float32),
    }
    stats = {"segments": n_segments, "random_segments": n_random_segments, "reward_steps": int(data["rewards"].sum())}
    return data, stats


def reference_policies(task: TaskSpec, episodes: int = REFERENCE_EPISODES, seed: int = 0) -> dict[str, Any]:
    """Success rate and mean return of a random policy and the noise-free controller on the task."""
    out: dict[str, Any] = {}
    for name in ("random", "controller"):
        env = make_env(task, seed=seed)
        ctrl = WaypointController(env.unwrapped.maze)
        rng = np.random.default_rng(seed)
        returns, successes = [], []
        for ep in range(episodes):
            env.reset(seed=seed + ep)
            done, ret, success = False, 0.0, False
            while not done:
                if name == "random":
                    action = rng.uniform(-1.0, 1.0, 2)
                else:
                    maze_env = env.unwrapped
                    pos, vel = maze_env.point_env.data.qpos[:2], maze_env.point_env.data.qvel[:2]
                    action = ctrl.action(pos, vel, ctrl.cell_of(maze_env.goal), maze_env.goal)
                _, r, term, trunc, info = env.step(np.asarray(action, dtype=np.float32))
                ret += float(r)
                success |= info["success"]
                done = term or trunc
            returns.append(ret)
            successes.append(success)
        env.close()
        out[name] = {
            "mean_return": float(np.mean(returns)),
            "success_rate": float(np.mean(successes)),
            "episodes": episodes,
        }
    return out


def fetch(task: TaskSpec, cache_dir: Path, progress: bool = True) -> Dataset:
    """Generate the task's dataset (``cache_dir`` is unused: generation is cheap and seeded)."""
    del cache_dir
    data, stats = collect(task, progress=progress)
    register_envs()
    layout = layout_of(_collection_env(task).observation_space, task.obs_keys)
    refs = reference_policies(task)
    log.info(
        "generated %d transitions in %d segments (%d random), %d reward steps; "
        "reference success: random %.2f, controller %.2f",
        len(data["rewards"]),
        stats["segments"],
        stats["random_segments"],
        stats["reward_steps"],
        refs["random"]["success_rate"],
        refs["controller"]["success_rate"],
    )
    meta = source_meta(
        task,
        dict(task.source),
        layout,
        env=(task.env_id, default_env_kwargs(task)),
        refs=(0.0, 1.0),  # success-terminated sparse task: the return is 1 on success, 0 otherwise
        task=task.name,
        max_episode_steps=task.max_episode_steps,
        obs_keys=list(task.obs_keys) if task.obs_keys else None,
        goal_cell=list(_check_task(task)),
        generator_seed=int(task.source.get("seed", 0)),
        collection=stats,
        reference_policies=refs,
    )
    return Dataset(**data, meta=meta)
