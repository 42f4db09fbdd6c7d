"""Monte-Carlo returns as the official Cal-QL code computes them (docs/method.md#monte-carlo-returns).

Rules, in order:

1. Rewards are transformed first: ``r~ = r * scale + bias``; returns are computed on ``r~``.
2. Trajectories are split after every terminal, every timeout (a timeout is *not* a terminal:
   it ends the segment but does not cut bootstrapping inside the recursion), and wherever
   ``next_observations[t] != observations[t+1]`` (a discontinuity in the data; this split is
   CORL's, tinkoff-ai/CORL PR #63, not the official loader's: docs/method.md#trajectory-splitting).
3. Sparse-reward tasks: a segment whose every reward equals ``r_neg`` (it never succeeded) gets
   ``G_t = r_neg / (1 - gamma)`` at every step (-500 for r_neg = -5, gamma = 0.99).
4. Otherwise ``G_t = r~_t + gamma * (1 - d_t) * G_{t+1}`` backwards from ``G_{T+1} = 0``, or from
   ``G_{T+1} = r~_T / (1 - gamma)`` with the infinite-horizon tail (Kitchen: the last reward
   repeats forever; a terminal last step still gets ``G_T = r~_T``).

The same functions label offline datasets and finished online episodes, so both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calql.config import RewardSpec

#: Two observations closer than this (max-abs difference) count as the same state.
DISCONTINUITY_ATOL = 1e-6


def transform_rewards(rewards: np.ndarray, spec: RewardSpec) -> np.ndarray:
    """``r * scale + bias`` in float32."""
    return (np.asarray(rewards, dtype=np.float64) * spec.scale + spec.bias).astype(np.float32)


def segment_ends(
    terminals: np.ndarray,
    timeouts: np.ndarray,
    observations: np.ndarray | None = None,
    next_observations: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean mask: True at the last transition of each trajectory segment."""
    terminals = np.asarray(terminals, dtype=bool)
    ends = terminals | np.asarray(timeouts, dtype=bool)
    if observations is not None and next_observations is not None and len(ends) > 1:
        gap = np.abs(next_observations[:-1] - observations[1:]).max(axis=1) > DISCONTINUITY_ATOL
        ends[:-1] |= gap
    if len(ends):
        ends[-1] = True  # the data end the last segment
    return ends


def segment_returns(
    train_rewards: np.ndarray,
    terminals: np.ndarray,
    gamma: float,
    spec: RewardSpec,
) -> np.ndarray:
    """MC returns of ONE segment of transformed rewards (rules 3 and 4)."""
    r = np.asarray(train_rewards, dtype=np.float64)
    d = np.asarray(terminals, dtype=np.float64)
    n = len(r)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    r_neg = spec.scaled_negative
    if spec.sparse and np.allclose(r, r_neg, rtol=0.0, atol=1e-6):
        return np.full(n, r_neg / (1.0 - gamma), dtype=np.float32)
    out = np.empty(n, dtype=np.float64)
    g_next = r[-1] / (1.0 - gamma) if spec.infinite_horizon else 0.0
    for t in range(n - 1, -1, -1):
        g_next = r[t] + gamma * (1.0 - d[t]) * g_next
        out[t] = g_next
    return out.astype(np.float32)


@dataclass(frozen=True)
class LabelStats:
    """What labeling found; logged and stored in the labeled dataset's metadata."""

    n_transitions: int
    n_trajectories: int
    n_successful: int
    n_transitions_in_successful: int
    n_terminal_segments: int
    n_timeout_segments: int
    n_discontinuity_splits: int
    failure_value: float | None
    return_mean: float
    return_std: float
    return_min: float
    return_max: float

    @property
    def success_share(self) -> float:
        return self.n_successful / max(self.n_trajectories, 1)

    def as_dict(self) -> dict[str, float | int | None]:
        d = dict(self.__dict__)
        d["success_share"] = self.success_share
        d["success_transition_share"] = self.n_transitions_in_successful / max(self.n_transitions, 1)
        return d


def label_returns(
    rewards: np.ndarray,
    terminals: np.ndarray,
    timeouts: np.ndarray,
    spec: RewardSpec,
    gamma: float,
    observations: np.ndarray | None = None,
    next_observations: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, LabelStats]:
    """Label a whole dataset: returns ``(train_rewards, mc_returns, stats)``."""
    train_rewards = transform_rewards(rewards, spec)
    terminals = np.asarray(terminals, dtype=bool)
    timeouts = np.asarray(timeouts, dtype=bool)
    ends = segment_ends(terminals, timeouts, observations, next_observations)
    end_idx = np.flatnonzero(ends)
    starts = np.concatenate([[0], end_idx[:-1] + 1])
    mc = np.empty(len(train_rewards), dtype=np.float32)
    r_neg = spec.scaled_negative
    n_success = n_term = n_timeout = n_success_steps = 0
    iterator = zip(starts, end_idx)
    if progress:
        from calql.progress import progress as progress_bar

        iterator = progress_bar(iterator, total=len(end_idx), desc="MC returns", unit="traj")
    for s, e in iterator:
        seg = slice(s, e + 1)
        mc[seg] = segment_returns(train_rewards[seg], terminals[seg], gamma, spec)
        if spec.sparse:
            success = not np.allclose(train_rewards[seg], r_neg, rtol=0.0, atol=1e-6)
        else:
            success = bool(terminals[e])
        n_success += int(success)
        n_success_steps += int(success) * (e + 1 - s)
        n_term += int(terminals[e])
        n_timeout += int(timeouts[e] and not terminals[e])
    split_only = ends & ~terminals & ~timeouts
    if len(split_only):
        split_only[-1] = False  # the end of the data is not a discontinuity
    stats = LabelStats(
        n_transitions=len(mc),
        n_trajectories=len(end_idx),
        n_successful=n_success,
        n_transitions_in_successful=n_success_steps,
        n_terminal_segments=n_term,
        n_timeout_segments=n_timeout,
        n_discontinuity_splits=int(split_only.sum()),
        failure_value=(r_neg / (1.0 - gamma)) if spec.sparse else None,
        return_mean=float(mc.mean()) if len(mc) else 0.0,
        return_std=float(mc.std()) if len(mc) else 0.0,
        return_min=float(mc.min()) if len(mc) else 0.0,
        return_max=float(mc.max()) if len(mc) else 0.0,
    )
    return train_rewards, mc, stats


def mc_returns_for_episode(
    rewards: np.ndarray,
    terminals: np.ndarray,
    spec: RewardSpec,
    gamma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """MC returns of one finished online episode (docs/method.md#online-episodes):
    ``(train_rewards, mc_returns)``.

    An online episode is one segment: it ends at a terminal (success) or at the time limit.
    """
    train_rewards = transform_rewards(rewards, spec)
    return train_rewards, segment_returns(train_rewards, terminals, gamma, spec)
