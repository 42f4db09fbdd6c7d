"""Evaluation: deterministic-policy episodes (score, success, return) and the calibration probe.

Scores (docs/method.md#normalized-score), in percent:

- ``return``: D4RL normalized score ``100 (R - ref_min) / (ref_max - ref_min)`` of the episode
  return, averaged over episodes (AntMaze/PointMaze: equals 100 x success rate).
- ``success``: 100 x fraction of episodes where ``info["success"]`` was ever true (Adroit-binary).
- ``last_reward``: the last step's reward normalized with the same formula (Kitchen under the
  cumulative-reward fork: ``num_stages_solved / 4``).

The calibration probe evaluates, on a fixed sample of dataset states, the policy's value
``min_i Q_i(s, pi(s))`` (``q_policy``), the MC return of those states (``mc_return``) and the Q of
the dataset actions (``q_data``): Cal-QL's claim is that ``q_policy`` stays near the true return
scale while CQL's sits far below it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from calql.errors import ConfigError
from calql.training.buffers import OfflineData
from calql.training.seeding import derive_seed


@dataclass(frozen=True)
class ScoreSpec:
    mode: str
    ref_min: float
    ref_max: float

    def normalize(self, value: float) -> float:
        return 100.0 * (value - self.ref_min) / (self.ref_max - self.ref_min)


def score_spec(run: dict[str, Any], dataset_meta: dict[str, Any]) -> ScoreSpec:
    """Reference returns from the task's ``score`` override, else from the dataset's metadata."""
    mode = run["score"]
    ref_min = run.get("ref_min") if run.get("ref_min") is not None else dataset_meta.get("ref_min_score")
    ref_max = run.get("ref_max") if run.get("ref_max") is not None else dataset_meta.get("ref_max_score")
    if mode == "success":
        return ScoreSpec(mode, 0.0, 1.0)
    if ref_min is None or ref_max is None:
        raise ConfigError(
            f"task {run['task']}: no reference returns for the normalized score (neither "
            f"tasks.{run['task']}.score.ref_min/ref_max nor ref_min_score/ref_max_score in the dataset metadata)"
        )
    if float(ref_max) == float(ref_min):
        raise ConfigError(f"task {run['task']}: ref_max == ref_min == {ref_min}; the score is undefined")
    return ScoreSpec(mode, float(ref_min), float(ref_max))


#: Most evaluation episodes stepped together (one policy call per step for all of them): each
#: needs its own environment, and Kitchen's or Adroit's are tens of MB each.
EVAL_BATCH = 25


def policy_actions(agent: Any, obs: np.ndarray, deterministic: bool, device: torch.device) -> np.ndarray:
    """Actions of ``agent`` for a batch of observations [B, obs] (numpy in, numpy out)."""
    # torch.tensor copies into torch's (64-byte aligned) allocator: a view of numpy memory would
    # have a varying alignment, and BLAS kernels may then sum in another order (other bits).
    with torch.no_grad():
        t = torch.tensor(obs, dtype=torch.float32, device=device)
        return agent.act(t, deterministic=deterministic).cpu().numpy()


def policy_action(agent: Any, obs: np.ndarray, deterministic: bool, device: torch.device) -> np.ndarray:
    """One action of ``agent`` for one observation (numpy in, numpy out)."""
    return policy_actions(agent, obs[None], deterministic, device)[0]


class Trajectory:
    """The transitions of one episode as they come, plus the index of the first step whose
    ``info["success"]`` was true (-1: never)."""

    def __init__(self) -> None:
        self.observations: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.next_obs: list[np.ndarray] = []
        self.terminals: list[bool] = []
        self.first_success = -1

    def add(
        self, obs: np.ndarray, action: np.ndarray, reward: float, nxt: np.ndarray, terminated: bool, info: dict
    ) -> None:
        self.observations.append(obs)
        self.actions.append(action)
        self.rewards.append(float(reward))
        self.next_obs.append(nxt)
        self.terminals.append(bool(terminated))
        if self.first_success < 0 and bool(info.get("success", False)):
            self.first_success = len(self.rewards) - 1

    def arrays(self) -> dict[str, np.ndarray | bool | int]:
        return {
            "observations": np.asarray(self.observations, dtype=np.float32),
            "actions": np.asarray(self.actions, dtype=np.float32),
            "rewards": np.asarray(self.rewards, dtype=np.float32),
            "next_observations": np.asarray(self.next_obs, dtype=np.float32),
            "terminals": np.asarray(self.terminals, dtype=bool),
            "success": self.first_success >= 0,
            "first_success": self.first_success,
        }


def run_episode(
    env: gym.Env, agent: Any, seed: int, deterministic: bool, device: torch.device
) -> dict[str, np.ndarray | bool | int]:
    """One episode from ``env.reset(seed=seed)``: :meth:`Trajectory.arrays`."""
    return run_episodes([env], agent, [seed], deterministic, device)[0]


def run_episodes(
    envs: Sequence[gym.Env], agent: Any, seeds: Sequence[int], deterministic: bool, device: torch.device
) -> list[dict[str, np.ndarray | bool | int]]:
    """One episode per env, from ``env.reset(seed=seed)``, stepped together: each step is one
    policy call for the episodes still running. An episode's actions are those it would get
    alone (each row of a batched MLP forward is computed from that row only), so the episodes
    do not depend on each other; ``tests/test_evaluation_batch.py`` checks it against one at a time."""
    obs = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)]
    trajectories = [Trajectory() for _ in envs]
    running = list(range(len(envs)))
    while running:
        actions = policy_actions(agent, np.stack([obs[i] for i in running]), deterministic, device)
        still_running = []
        for i, action in zip(running, actions):
            nxt, reward, terminated, truncated, info = envs[i].step(action)
            trajectories[i].add(obs[i], action, reward, nxt, terminated, info)
            obs[i] = nxt
            if not (terminated or truncated):
                still_running.append(i)
        running = still_running
    return [t.arrays() for t in trajectories]


class EvalEnvs:
    """The evaluation environments of a phase: copies of the task's env made by ``make`` when an
    evaluation first needs them (at most :data:`EVAL_BATCH`), kept for the next evaluations."""

    def __init__(self, make: Callable[[], gym.Env], first: gym.Env | None = None):
        self._make = make
        self.envs: list[gym.Env] = [first] if first is not None else []

    def take(self, n: int) -> list[gym.Env]:
        while len(self.envs) < n:
            self.envs.append(self._make())
        return self.envs[:n]

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


def evaluate(
    envs: EvalEnvs,
    agent: Any,
    episodes: int,
    seed: int,
    phase: str,
    eval_index: int,
    score: ScoreSpec,
    device: torch.device,
    batch: int = EVAL_BATCH,
) -> dict[str, float]:
    """``episodes`` deterministic episodes, ``batch`` at a time; each reset is seeded from (seed,
    phase, eval index, episode), so the episodes and the score do not depend on ``batch``.

    Besides the score, the row records how the episodes ended (``eval/*``), so that a finished
    run can be checked against its domain's conventions without rerunning it: the longest episode
    (never above the env's cap), the share that terminated (rather than hit the cap), and the
    share that went on after their first success (0 where the episode must end at success).
    """
    seeds = [derive_seed(seed, phase, "eval", eval_index, ep) for ep in range(episodes)]
    trajectories = []
    for start in range(0, episodes, batch):
        chunk = seeds[start : start + batch]
        trajectories += run_episodes(envs.take(len(chunk)), agent, chunk, True, device)
    returns, successes, last, lengths, terminated, continued = [], [], [], [], [], []
    for traj in trajectories:
        returns.append(float(np.sum(traj["rewards"], dtype=np.float64)))
        successes.append(float(traj["success"]))
        last.append(float(traj["rewards"][-1]))
        lengths.append(len(traj["rewards"]))
        terminated.append(float(traj["terminals"][-1]))
        continued.append(float(traj["success"] and traj["first_success"] < len(traj["rewards"]) - 1))
    ret, succ = float(np.mean(returns)), float(np.mean(successes))
    if score.mode == "return":
        value = float(np.mean([score.normalize(r) for r in returns]))
    elif score.mode == "success":
        value = 100.0 * succ
    else:
        value = float(np.mean([score.normalize(r) for r in last]))
    return {
        "score": value,
        "success_rate": succ,
        "return_mean": ret,
        "eval/episode_length_mean": float(np.mean(lengths)),
        "eval/episode_length_max": int(max(lengths)),
        "eval/terminated_rate": float(np.mean(terminated)),
        "eval/continued_after_success_rate": float(np.mean(continued)),
    }


class CalibrationProbe:
    """A fixed sample of dataset states (chosen by the run seed) for the Q-calibration diagnostic."""

    def __init__(self, data: OfflineData, n: int, seed: int):
        rng = np.random.default_rng(derive_seed(seed, "calibration"))
        n = min(int(n), data.size)
        self.rows = data.rows(np.sort(rng.choice(data.size, size=n, replace=False)))

    def __call__(self, agent: Any) -> dict[str, float]:
        with torch.no_grad():
            q_policy = agent.policy_q(self.rows["observations"]).float().mean()
            q_data = agent.q_value(self.rows["observations"], self.rows["actions"]).float().mean()
        return {
            "q_policy": float(q_policy),
            "mc_return": float(self.rows["mc_returns"].mean()),
            "q_data": float(q_data),
        }
