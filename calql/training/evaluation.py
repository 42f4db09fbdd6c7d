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


def policy_action(agent: Any, obs: np.ndarray, deterministic: bool, device: torch.device) -> np.ndarray:
    """One action of ``agent`` for one observation (numpy in, numpy out)."""
    # torch.tensor copies into torch's (64-byte aligned) allocator: a view of numpy memory would
    # have a varying alignment, and BLAS kernels may then sum in another order (other bits).
    with torch.no_grad():
        t = torch.tensor(obs, dtype=torch.float32, device=device).unsqueeze(0)
        return agent.act(t, deterministic=deterministic)[0].cpu().numpy()


def run_episode(
    env: gym.Env, agent: Any, seed: int, deterministic: bool, device: torch.device
) -> dict[str, np.ndarray | bool]:
    """One episode from ``env.reset(seed=seed)``; arrays of the transitions plus success and the
    index of the first step whose ``info["success"]`` was true (-1: never)."""
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, next_obs, terminals = [], [], [], [], []
    first_success = -1
    while True:
        action = policy_action(agent, obs, deterministic, device)
        nxt, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        next_obs.append(nxt)
        terminals.append(bool(terminated))
        if first_success < 0 and bool(info.get("success", False)):
            first_success = len(rewards) - 1
        obs = nxt
        if terminated or truncated:
            break
    return {
        "observations": np.asarray(observations, dtype=np.float32),
        "actions": np.asarray(actions, dtype=np.float32),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "next_observations": np.asarray(next_obs, dtype=np.float32),
        "terminals": np.asarray(terminals, dtype=bool),
        "success": first_success >= 0,
        "first_success": first_success,
    }


def evaluate(
    env: gym.Env,
    agent: Any,
    episodes: int,
    seed: int,
    phase: str,
    eval_index: int,
    score: ScoreSpec,
    device: torch.device,
) -> dict[str, float]:
    """``episodes`` deterministic episodes; each reset is seeded from (seed, phase, eval index, episode).

    Besides the score, the row records how the episodes ended (``eval/*``), so that a finished
    run can be checked against its domain's conventions without rerunning it: the longest episode
    (never above the env's cap), the share that terminated (rather than hit the cap), and the
    share that went on after their first success (0 where the episode must end at success).
    """
    returns, successes, last, lengths, terminated, continued = [], [], [], [], [], []
    for ep in range(episodes):
        traj = run_episode(env, agent, derive_seed(seed, phase, "eval", eval_index, ep), True, device)
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
            q_data = q_value(agent, self.rows["observations"], self.rows["actions"]).float().mean()
        return {
            "q_policy": float(q_policy),
            "mc_return": float(self.rows["mc_returns"].mean()),
            "q_data": float(q_data),
        }


def q_value(agent: Any, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``min_i Q_i(s, a)`` [B]: the agent's ``q_value`` if it has one, else its twin ``critics``."""
    if hasattr(agent, "q_value"):
        return agent.q_value(obs, actions)
    critics = getattr(agent, "critics", None)
    if critics is None:
        return torch.full((obs.shape[0],), float("nan"))
    a = actions.unsqueeze(1)
    return torch.minimum(critics[0](obs, a), critics[1](obs, a)).squeeze(1)
