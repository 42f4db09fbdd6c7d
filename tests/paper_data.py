"""The paper benchmark's data files in their real formats, made locally from gymnasium-robotics
rollouts (no network): Minari AntMaze/Kitchen datasets, the AWAC Adroit-binary ``.npy`` pickles
and a D4RL AntMaze HDF5, under the exact ids and paths ``config/paper.yaml`` names.

    python -m tests.paper_data OUT_DIR [--tasks antmaze-medium-play pen-binary ...] [--seed 0]

writes ``OUT_DIR/minari`` (use it as ``MINARI_DATASETS_PATH``), ``OUT_DIR/adroit-binary/
offpolicy_hand_data/*.npy``, ``OUT_DIR/d4rl/<D4RL registry path>`` (serve ``OUT_DIR/d4rl`` as a
``base_url``) and ``OUT_DIR/paper.yaml``: config/paper.yaml pointing at these files with
downloads off. Output is deterministic given ``--seed``. The formats mirror:

- AntMaze ``D4RL/antmaze/<name>-v1``: Farama's ``scripts/D4RL/antmaze/create_antmaze_dataset.py``
  (github.com/Farama-Foundation/minari-dataset-generation-scripts @ 765bb1428077; it names the
  ids -v2, the published -v1 were made with the same envs by commit f0e60c109c03): collected in
  ``AntMaze_Medium-v4``/``AntMaze_Medium_Diverse_GR-v4``/``AntMaze_Large-v4``/
  ``AntMaze_Large_Diverse_GR-v4`` with ``continuing_task=True, reset_target=False`` (no
  terminations, reward 1 on every step within 0.45 of the goal), dict observations
  (achieved_goal 2, observation 27, desired_goal 2, float64), infos ``success, qpos (15),
  qvel (14), goal (2)`` and an eval_env_spec whose ``maze_map`` marks the D4RL start ``r`` (1, 1)
  and goal ``g`` cells (``EVAL_ENV_MAPS`` there); references 0 / 1 (D4RL ``infos.py``).
- Kitchen ``D4RL/kitchen/<name>-v2``: ``scripts/D4RL/kitchen/create_franka_dataset.py`` (same
  repository @ f4579c7760369; the published ``kitchen/partial-v2/data/metadata.json`` of
  huggingface.co/datasets/farama-minari/D4RL, commit 30bf0b766aab, has the same env_spec):
  ``FrankaKitchen-v1`` with ``remove_task_when_completed=False,
  terminate_on_tasks_completed=False``, ``max_episode_steps`` 450 (mixed, partial) / 280
  (complete), its ``tasks_to_complete``, the full dict observation (``observation`` 59 plus the
  achieved/desired goal dicts), infos ``ctrl``, no eval_env_spec; references 0 / 4.
- Adroit-binary: the AWAC files as the official loader reads them (nakamotoo/Cal-QL @ ac6eafe,
  ``JaxCQL/replay_buffer.py`` ``get_hand_dataset_with_mc_calculation``); trajectory layout as
  ``tests/test_paper_conventions.py`` ``_traj``: expert files hold dict observations
  (``state_observation``), rewards one longer than the observations, ``terminals``,
  ``agent_infos`` and ``env_infos`` lists; BC files arrays with rewards/terminals of shape (T, 1).
  Raw rewards are 0 on success else -1, from the env's ``success`` flag.
- D4RL ``antmaze-medium-diverse-v2`` (``calql/data/d4rl_registry.json`` path): float32
  ``observations`` (29 = x, y + the 27 ant values) / ``actions`` / ``rewards``, bool
  ``terminals`` (at every reward-1 step, D4RL v2 "sparse_fixed") and ``timeouts`` (episode
  ends), ``infos/goal, infos/qpos, infos/qvel`` (TFDS ``d4rl_antmaze`` feature list, v2 files);
  reward 1 within 0.5 of the goal as D4RL. x, y and the goal are mapped to D4RL's maze frame
  (registry notes); the ant's orientation and velocities stay in gymnasium-robotics' frame.

What is real and what is set by hand (synthetic content in the real format):

- Real: every observation, reward, termination, truncation by the env and info comes from
  ``env.reset``/``env.step`` of the real environments (dtypes as they return them: float64
  observations; actions in the action space's dtype, float32 for AntMaze/Adroit, float64 for
  Kitchen); infos have T + 1 rows (reset + steps) as Minari's DataCollector records them; the
  Adroit rewards (-1 / 0) are the env's ``success`` flag, as the AWAC "sparse" files.
- By hand: actions are seeded uniform noise (Kitchen scaled by 0.2), not a trained policy or
  demonstrations; episodes are shorter than the real ones and their last step is flagged a
  truncation (the recorder's cut) where the env would not yet truncate; AntMaze "at goal"
  episodes are reset with ``reset_cell == goal_cell`` (the D4RL goal cell) and the first seed
  whose noisy start lies within 0.3 of the noisy goal, the ant then stays at the goal by real
  dynamics (rewards 1) until it drifts away; the other AntMaze episodes reset as the env does by
  itself and usually never reach the goal; Kitchen episode k completes its first k sub-tasks by
  writing their goal joint values into the simulator state at chosen steps (objects at rest),
  the env then counts them itself; Adroit successes come from writing a success state at a
  chosen step (door hinge opened to 1.5 rad; relocate ball moved onto the target; pen moved onto
  the target ball and tilted to the target orientation by a grid search), the env's own
  ``success`` flag then gives the reward for as long as the state lasts. The last trajectory of
  every Adroit file gets no edit (a failure the official loader drops, unless the random hand
  succeeds by itself). The expert files' extra trailing reward is 0 (the ``_traj`` layout).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIG = REPO / "config" / "paper.yaml"
#: Collection environments of the AntMaze datasets (Farama's DATASET_ID_TO_ENV_ID) and their maze.
ANTMAZE_ENVS = {
    "antmaze-medium-play": ("AntMaze_Medium-v4", "medium"),
    "antmaze-medium-diverse": ("AntMaze_Medium_Diverse_GR-v4", "medium"),
    "antmaze-large-play": ("AntMaze_Large-v4", "large"),
    "antmaze-large-diverse": ("AntMaze_Large_Diverse_GR-v4", "large"),
}
#: D4RL evaluation start / goal cells (Farama's EVAL_ENV_MAPS, config/paper.yaml eval_reset).
ANTMAZE_EVAL_CELLS = {"medium": ((1, 1), (6, 6)), "large": ((1, 1), (7, 9))}
ANTMAZE_PLAIN_ENV = {"medium": "AntMaze_Medium-v4", "large": "AntMaze_Large-v4"}
#: Farama's GOAL_TASKS and max_episode_steps of the Kitchen datasets.
KITCHEN_TASKS = {
    "kitchen-mixed": (["microwave", "kettle", "bottom burner", "light switch"], 450),
    "kitchen-partial": (["microwave", "kettle", "light switch", "slide cabinet"], 450),
    "kitchen-complete": (["microwave", "kettle", "light switch", "slide cabinet"], 280),
}
#: task -> (env id, expert file, BC file, trajectory length): the official file names.
ADROIT = {
    "pen-binary": ("AdroitHandPen-v1", "pen2_sparse.npy", "pen_bc_sparse4.npy", 100),
    "door-binary": ("AdroitHandDoor-v1", "door2_sparse.npy", "door_bc_sparse4.npy", 200),
    "relocate-binary": ("AdroitHandRelocate-v1", "relocate2_sparse.npy", "relocate_bc_sparse4.npy", 200),
}
ADROIT_DIR = Path("adroit-binary") / "offpolicy_hand_data"
D4RL_NAME = "antmaze-medium-diverse-v2"
ALL_TASKS = (*ANTMAZE_ENVS, *KITCHEN_TASKS, *ADROIT)
#: Distance below which gymnasium-robotics (0.45) and D4RL (0.5) reward the ant.
GR_GOAL_RADIUS, D4RL_GOAL_RADIUS = 0.45, 0.5


@dataclass(frozen=True)
class Sizes:
    """How much data per task (real datasets: 1000-step AntMaze episodes, 1M steps)."""

    antmaze_episodes: int = 6
    antmaze_at_goal: int = 2
    antmaze_steps: int = 200
    kitchen_episodes: int = 5
    kitchen_steps: int = 120
    adroit_trajectories: int = 3
    d4rl_episodes: int = 3


Edit = Callable[[Any], None]


def _env(env_id: str, **kwargs: Any) -> Any:
    import gymnasium as gym
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(env_id, **kwargs)


def _copy(item: Any) -> Any:
    """A deep copy of a (nested dict) observation: envs may reuse their arrays."""
    if isinstance(item, dict):
        return {key: _copy(value) for key, value in item.items()}
    return np.array(item, copy=True)


def _stack(items: list[Any]) -> Any:
    """A list of (nested dict) observations/infos -> (nested dict of) stacked arrays."""
    if isinstance(items[0], dict):
        return {key: _stack([item[key] for item in items]) for key in items[0]}
    return np.stack([np.asarray(item) for item in items])


def rollout(
    env: Any,
    steps: int,
    rng: np.random.Generator,
    *,
    seed: int,
    options: dict[str, Any] | None = None,
    scale: float = 1.0,
    edits: dict[int, Edit] | None = None,
    info_fn: Callable[[Any, Any, dict[str, Any]], dict[str, Any]] | None = None,
    reset: tuple[Any, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One episode of seeded uniform actions (times ``scale``) in the real env; ``edits[t]``
    changes the simulator state before step ``t``. Returns Minari-style arrays (T + 1
    observations and infos); the last step is a truncation (the recorder's cut)."""
    obs, info = reset if reset is not None else env.reset(seed=seed, options=options)
    space = env.action_space
    observations, infos = [_copy(obs)], [info_fn(env, obs, info) if info_fn else {}]
    actions, rewards, terminations, truncations = [], [], [], []
    for t in range(steps):
        if edits and t in edits:
            edits[t](env.unwrapped)
        action = (scale * rng.uniform(space.low, space.high)).astype(space.dtype)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(_copy(obs))
        infos.append(info_fn(env, obs, info) if info_fn else {})
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated) or t == steps - 1)
        if terminated or truncated:
            break
    return {
        "seed": seed,
        "observations": _stack(observations),
        "actions": np.stack(actions),
        "rewards": np.asarray(rewards, dtype=np.float64),
        "terminations": np.asarray(terminations),
        "truncations": np.asarray(truncations),
        "infos": _stack(infos) if infos[0] else {},
    }


@contextlib.contextmanager
def minari_root(root: Path) -> Iterator[Path]:
    """MINARI_DATASETS_PATH set to ``root`` while Minari writes (restored afterwards)."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield root
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def write_minari(root: Path, dataset_id: str, episodes: list[dict[str, Any]], env: Any, **kwargs: Any) -> Path:
    """``minari.create_dataset_from_buffers`` under ``root`` (an existing copy is replaced), with
    this builder named as the dataset's algorithm and Farama's generation scripts as its code."""
    kwargs = {
        "algorithm_name": "uniform-random (tests/paper_data.py)",
        "code_permalink": "https://github.com/Farama-Foundation/minari-dataset-generation-scripts",
        **kwargs,
    }
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    shutil.rmtree(root / dataset_id, ignore_errors=True)
    buffers = [
        EpisodeBuffer(id=k, **{key: ep[key] for key in EpisodeBuffer.__dataclass_fields__ if key in ep and key != "id"})
        for k, ep in enumerate(episodes)
    ]
    with minari_root(root), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari nags about description/permalink
        minari.create_dataset_from_buffers(dataset_id=dataset_id, buffer=buffers, env=env, **kwargs)
    return root / dataset_id


# ----------------------------------------------------------------------------- AntMaze
def _antmaze_info(env: Any, obs: dict[str, np.ndarray], info: dict[str, Any]) -> dict[str, Any]:
    """Farama's AntMazeStepDataCallback: success plus the MuJoCo state and the goal."""
    dist = np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"])
    return {
        "success": np.bool_(info.get("success", dist <= GR_GOAL_RADIUS)),
        "qpos": np.concatenate([obs["achieved_goal"], obs["observation"][:13]]),
        "qvel": obs["observation"][13:].copy(),
        "goal": obs["desired_goal"].copy(),
    }


def reset_at_goal(env: Any, cell: tuple[int, int], first_seed: int, radius: float = 0.3) -> tuple[int, Any]:
    """Reset with ``reset_cell == goal_cell``; the first seed from ``first_seed`` whose noisy
    start lies within ``radius`` of the noisy goal. Returns (seed, (obs, info))."""
    options = {"reset_cell": np.asarray(cell), "goal_cell": np.asarray(cell)}
    for seed in range(first_seed, first_seed + 1000):
        obs, info = env.reset(seed=seed, options=options)
        if np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]) <= radius:
            return seed, (obs, info)
    raise RuntimeError(f"no start within {radius} of goal cell {cell} in 1000 seeds")


def antmaze_episodes(env: Any, maze: str, n: int, at_goal: int, steps: int, seed: int) -> list[dict[str, Any]]:
    """``at_goal`` episodes started at the goal (successes by real dynamics), then episodes
    reset as the env does by itself (random cells; mostly never at the goal)."""
    rng = np.random.default_rng(seed)
    goal_cell = ANTMAZE_EVAL_CELLS[maze][1]
    episodes = []
    for k in range(n):
        if k < at_goal:
            ep_seed, start = reset_at_goal(env, goal_cell, seed * 100_000 + k * 1000)
        else:
            ep_seed, start = seed * 100_000 + k, None
        episodes.append(rollout(env, steps, rng, seed=ep_seed, info_fn=_antmaze_info, reset=start))
    return episodes


def antmaze_eval_spec(env: Any, maze: str) -> Any:
    """The collection spec with the D4RL evaluation map (``r`` start, ``g`` goal), as Farama's
    script builds ``eval_env_spec``."""
    plain = _env(ANTMAZE_PLAIN_ENV[maze])
    maze_map = copy.deepcopy(plain.spec.kwargs["maze_map"])
    plain.close()
    (r_row, r_col), (g_row, g_col) = ANTMAZE_EVAL_CELLS[maze]
    maze_map[r_row][r_col], maze_map[g_row][g_col] = "r", "g"
    spec = copy.deepcopy(env.spec)
    spec.kwargs["maze_map"] = maze_map
    return spec


def build_antmaze(root: Path, task: str, dataset_id: str, sizes: Sizes, seed: int) -> Path:
    """One AntMaze Minari dataset (continuing task, as D4RL/antmaze/*-v1)."""
    env_id, maze = ANTMAZE_ENVS[task]
    env = _env(env_id, continuing_task=True, reset_target=False)
    episodes = antmaze_episodes(env, maze, sizes.antmaze_episodes, sizes.antmaze_at_goal, sizes.antmaze_steps, seed)
    path = write_minari(
        root,
        dataset_id,
        episodes,
        env,
        eval_env=antmaze_eval_spec(env, maze),
        ref_min_score=0.0,
        ref_max_score=1.0,
    )
    env.close()
    return path


# ----------------------------------------------------------------------------- Kitchen
def complete_subtask(task: str) -> Edit:
    """An edit that puts sub-task ``task``'s joints at their goal values (objects at rest)."""
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES

    def edit(kitchen: Any) -> None:
        robot = kitchen.robot_env
        qpos, qvel = robot.data.qpos.copy(), robot.data.qvel.copy()
        qpos[OBS_ELEMENT_INDICES[task]] = OBS_ELEMENT_GOALS[task]
        qvel[9:] = 0.0
        robot.set_state(qpos, qvel)

    return edit


def _kitchen_info(env: Any, obs: Any, info: dict[str, Any]) -> dict[str, Any]:
    """Farama's KitchenStepDataCallback: the simulator's control input."""
    return {"ctrl": env.unwrapped.robot_env.data.ctrl.copy()}


def build_kitchen(root: Path, task: str, dataset_id: str, sizes: Sizes, seed: int) -> Path:
    """One Kitchen Minari dataset (as D4RL/kitchen/*-v2); episode k completes k sub-tasks."""
    subtasks, max_steps = KITCHEN_TASKS[task]
    env = _env(
        "FrankaKitchen-v1",
        remove_task_when_completed=False,
        terminate_on_tasks_completed=False,
        tasks_to_complete=subtasks,
        max_episode_steps=max_steps,
    )
    rng = np.random.default_rng(seed)
    steps = min(sizes.kitchen_steps, max_steps)
    episodes = []
    for k in range(sizes.kitchen_episodes):
        done = subtasks[: min(k, len(subtasks))]
        edits = {(i + 1) * steps // (len(done) + 2): complete_subtask(s) for i, s in enumerate(done)}
        episodes.append(rollout(env, steps, rng, seed=seed * 1000 + k, scale=0.2, edits=edits, info_fn=_kitchen_info))
    path = write_minari(
        root,
        dataset_id,
        episodes,
        env,
        ref_min_score=0.0,
        ref_max_score=4.0,
    )
    env.close()
    return path


# ----------------------------------------------------------------------------- Adroit
def _open_door(door: Any) -> None:
    qpos = door.data.qpos.copy()
    qpos[door.door_hinge_addrs] = 1.5  # success: hinge angle above 1.35
    door.set_state(qpos, door.data.qvel.copy())


def _ball_on_target(relocate: Any) -> None:
    qpos, qvel = relocate.data.qpos.copy(), relocate.data.qvel.copy()
    target = relocate.data.site_xpos[relocate.target_obj_site_id]
    qpos[30:33] += target - relocate.data.xpos[relocate.obj_body_id]  # the ball's slide joints
    qvel[30:] = 0.0
    relocate.set_state(qpos, qvel)


def _pen_orientation_match(pen: Any, a: float, b: float) -> float:
    """Cosine between the pen and the target axes with the pen's tilt hinges at (a, b)."""
    import mujoco

    data = pen.data
    data.qpos[-3], data.qpos[-2] = a, b
    mujoco.mj_forward(pen.model, data)
    target = (data.site_xpos[pen.tar_t_site_id] - data.site_xpos[pen.tar_b_site_id]) / pen.tar_length
    orien = (data.site_xpos[pen.obj_t_site_id] - data.site_xpos[pen.obj_b_site_id]) / pen.pen_length
    return float(orien @ target)


def _pen_to_target(pen: Any) -> None:
    """Put the pen (object joints: slides OBJTx/y/z, hinges OBJRx/y/z) on the target: tilt
    angles by a coarse-then-fine grid search, then its centre onto the target ball."""
    data = pen.data
    data.qvel[-6:] = 0.0
    best = (-2.0, 0.0, 0.0)
    for grid in (np.linspace(-np.pi, np.pi, 25), np.linspace(-0.3, 0.3, 13)):
        centre = best[1:]
        for a in grid + centre[0]:
            for b in grid + centre[1]:
                best = max(best, (_pen_orientation_match(pen, a, b), a, b))
    _pen_orientation_match(pen, best[1], best[2])
    slides = np.arange(pen.model.njnt)[-6:-3]
    axes = data.xaxis[slides].T  # world directions of the three slide joints
    delta = data.site_xpos[pen.eps_ball_site_id] - data.xpos[pen.obj_body_id]
    data.qpos[-6:-3] += np.linalg.solve(axes, delta)
    pen.set_state(data.qpos.copy(), data.qvel.copy())


ADROIT_SUCCESS: dict[str, Edit] = {
    "pen-binary": _pen_to_target,
    "door-binary": _open_door,
    "relocate-binary": _ball_on_target,
}


def awac_trajectory(ep: dict[str, Any], expert: bool) -> dict[str, Any]:
    """A rollout as one trajectory of the AWAC files (layout of test_paper_conventions._traj):
    rewards 0 on success else -1 from the env's success flag."""
    states = ep["observations"]
    success = np.asarray(ep["infos"]["success"][1:], dtype=bool)
    rewards = np.where(success, 0.0, -1.0)
    t = len(rewards)
    if expert:  # dict observations; rewards one longer than the observations
        return {
            "observations": [{"state_observation": s} for s in states[:-1]],
            "next_observations": [{"state_observation": s} for s in states[1:]],
            "actions": ep["actions"],
            "rewards": np.asarray([*rewards, 0.0]),
            "terminals": np.zeros(t, dtype=bool),
            "agent_infos": [{} for _ in range(t)],
            "env_infos": [{"goal_achieved": np.bool_(s)} for s in success],
        }
    return {
        "observations": states[:-1],
        "next_observations": states[1:],
        "actions": ep["actions"],
        "rewards": rewards[:, None],
        "terminals": np.zeros((t, 1), dtype=bool),
        "agent_infos": {"mean": ep["actions"].astype(np.float64)},
        "env_infos": {"goal_achieved": success},
    }


def write_npy(path: Path, trajectories: list[dict[str, Any]]) -> Path:
    """``np.save`` of an object array of trajectory dicts (as the AWAC files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.empty(len(trajectories), dtype=object)
    arr[:] = trajectories
    np.save(path, arr, allow_pickle=True)
    return path


def build_adroit(root: Path, task: str, sizes: Sizes, seed: int) -> list[Path]:
    """The expert and BC files of one Adroit task; every trajectory but the last of each file
    gets a success state written at a chosen step."""
    env_id, expert_name, bc_name, steps = ADROIT[task]
    env = _env(env_id, max_episode_steps=steps)
    rng = np.random.default_rng(seed)
    paths = []
    for f, (name, expert) in enumerate(((expert_name, True), (bc_name, False))):
        trajectories = []
        for k in range(sizes.adroit_trajectories):
            last = k == sizes.adroit_trajectories - 1
            edits = {} if last else {steps // 2 + 7 * k: ADROIT_SUCCESS[task]}
            info_fn = lambda e, o, i: {"success": np.bool_(i.get("success", False))}  # noqa: E731
            ep = rollout(env, steps, rng, seed=seed * 1000 + 100 * f + k, edits=edits, info_fn=info_fn)
            trajectories.append(awac_trajectory(ep, expert))
        paths.append(write_npy(root / ADROIT_DIR / name, trajectories))
    env.close()
    return paths


# ----------------------------------------------------------------------------- D4RL HDF5
def to_d4rl_frame(xy: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """gymnasium-robotics x, y -> D4RL's maze frame (origin at cell (1, 1), y mirrored)."""
    out = np.array(xy, dtype=np.float64, copy=True)
    out[..., 0] = xy[..., 0] - origin[0]
    out[..., 1] = origin[1] - xy[..., 1]
    return out


def d4rl_rows(episodes: list[dict[str, Any]], origin: np.ndarray) -> dict[str, np.ndarray]:
    """AntMaze rollouts as D4RL antmaze-v2 rows (no next observations; T rows per episode)."""
    parts = []
    for ep in episodes:
        obs = {k: v[:-1] for k, v in ep["observations"].items()}
        xy, goal = to_d4rl_frame(obs["achieved_goal"], origin), to_d4rl_frame(obs["desired_goal"], origin)
        next_xy = ep["observations"]["achieved_goal"][1:]
        reached = np.linalg.norm(next_xy - ep["observations"]["desired_goal"][1:], axis=1) <= D4RL_GOAL_RADIUS
        t = len(ep["rewards"])
        parts.append(
            {
                "observations": np.concatenate([xy, obs["observation"]], axis=1),
                "actions": ep["actions"],
                "rewards": reached.astype(np.float64),
                "terminals": reached,
                "timeouts": np.arange(t) == t - 1,
                "infos/goal": goal,
                "infos/qpos": np.concatenate([xy, obs["observation"][:, :13]], axis=1),
                "infos/qvel": obs["observation"][:, 13:],
            }
        )
    rows = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return {k: v if v.dtype == bool else v.astype(np.float32) for k, v in rows.items()}


def build_d4rl(root: Path, sizes: Sizes, seed: int) -> Path:
    """``antmaze-medium-diverse-v2`` at its registry path under ``root/d4rl`` (D4RL collected it
    in a continuing task with a fixed goal, as these rollouts)."""
    from calql.data.sources.d4rl import lookup

    env = _env("AntMaze_Medium_Diverse_GR-v4", continuing_task=True, reset_target=False)
    episodes = antmaze_episodes(env, "medium", sizes.d4rl_episodes, 1, sizes.antmaze_steps, seed + 7)
    origin = env.unwrapped.maze.cell_rowcol_to_xy(np.array([1, 1]))
    env.close()
    path = root / "d4rl" / lookup(D4RL_NAME)["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, arr in d4rl_rows(episodes, origin).items():
            f.create_dataset(key, data=arr)
    return path


# ----------------------------------------------------------------------------- all tasks
def paper_tasks(config_path: Path = PAPER_CONFIG) -> dict[str, dict[str, Any]]:
    """The tasks of config/paper.yaml as written (unvalidated)."""
    from calql.config import read_config_file

    return read_config_file(config_path)["tasks"]


def write_paper_config(root: Path, tasks: Sequence[str], results_dir: Path | None = None) -> Path:
    """``root/paper.yaml``: config/paper.yaml with only ``tasks``, Minari downloads off and the
    Adroit files under ``root`` (the Minari root is set by MINARI_DATASETS_PATH=root/minari)."""
    from calql.config import read_config_file

    config = read_config_file(PAPER_CONFIG)
    config["tasks"] = {name: config["tasks"][name] for name in tasks}
    config["results_dir"] = str(results_dir or root / "results")
    per_task = config["train"].get("per_task") or {}
    config["train"]["per_task"] = {name: v for name, v in per_task.items() if name in config["tasks"]}
    for task in config["tasks"].values():
        source = task["source"]
        if source["kind"] == "minari":
            source["download"] = False
        elif source["kind"] == "awac_npy":
            source["expert"] = str(root / ADROIT_DIR / Path(source["expert"]).name)
            source["bc"] = str(root / ADROIT_DIR / Path(source["bc"]).name)
    path = root / "paper.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def build_paper_data(
    root: Path,
    tasks: Sequence[str] | None = None,
    seed: int = 0,
    sizes: Sizes | None = None,
    d4rl: bool = True,
) -> dict[str, list[Path]]:
    """Write the data of ``tasks`` (default: all ten paper tasks) under ``root`` (module
    docstring); returns the files or dataset folders per task (``"d4rl"``: the HDF5)."""
    root, sizes = Path(root).resolve(), sizes or Sizes()  # minari mangles a relative root
    config_tasks = paper_tasks()
    tasks = list(tasks or ALL_TASKS)
    unknown = [t for t in tasks if t not in ALL_TASKS]
    if unknown:
        raise ValueError(f"unknown paper task(s) {unknown}; known: {', '.join(ALL_TASKS)}")
    out: dict[str, list[Path]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium's env checker and minari's metadata nags
        for task in tasks:
            out[task] = _build_task(root, task, config_tasks[task], sizes, seed * 100 + ALL_TASKS.index(task))
        if d4rl:
            out["d4rl"] = [build_d4rl(root, sizes, seed)]
    write_paper_config(root, tasks)
    return out


def _build_task(root: Path, task: str, config_task: dict[str, Any], sizes: Sizes, seed: int) -> list[Path]:
    """The data of one paper task."""
    if task in ANTMAZE_ENVS:
        return [build_antmaze(root / "minari", task, config_task["source"]["id"], sizes, seed)]
    if task in KITCHEN_TASKS:
        return [build_kitchen(root / "minari", task, config_task["source"]["id"], sizes, seed)]
    return build_adroit(root, task, sizes, seed)


def main(argv: list[str] | None = None) -> int:
    """CLI: build the data and print what was written and how long it took."""
    parser = argparse.ArgumentParser(prog="python -m tests.paper_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="output folder (minari/, adroit-binary/, d4rl/, paper.yaml)")
    parser.add_argument("--tasks", nargs="+", default=None, choices=ALL_TASKS, help="default: all ten")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-d4rl", action="store_true", help="skip the D4RL AntMaze HDF5")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    written = build_paper_data(args.out_dir, args.tasks, args.seed, d4rl=not args.no_d4rl)
    for task, paths in written.items():
        for path in paths:
            print(f"{task}: {path}")
    print(f"MINARI_DATASETS_PATH={args.out_dir / 'minari'}; config {args.out_dir / 'paper.yaml'}")
    print(f"built in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
