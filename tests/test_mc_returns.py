"""MC returns against hand-computed trajectories (docs/method.md#monte-carlo-returns)."""

import numpy as np
import pytest

from calql.config import RewardSpec
from calql.data.mc_returns import label_returns, mc_returns_for_episode, segment_ends, segment_returns

G = 0.9
ANTMAZE = RewardSpec(scale=10.0, bias=-5.0, sparse=True, negative_reward=0.0)


def obs_chain(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous observations: next_obs[t] == obs[t+1]."""
    o = np.arange(n + 1, dtype=np.float32)[:, None]
    return o[:-1], o[1:]


def test_success_trajectory_sparse():
    # raw rewards 0,0,1 (terminal at the goal) -> r~ = -5,-5,5
    r = np.array([0, 0, 1.0])
    d = np.array([0, 0, 1])
    to = np.zeros(3)
    obs, nxt = obs_chain(3)
    tr, mc, stats = label_returns(r, d, to, ANTMAZE, G, obs, nxt)
    np.testing.assert_allclose(tr, [-5, -5, 5])
    # G2 = 5; G1 = -5 + 0.9*5 = -0.5; G0 = -5 + 0.9*(-0.5) = -5.45
    np.testing.assert_allclose(mc, [-5.45, -0.5, 5.0], rtol=1e-6)
    assert stats.n_trajectories == 1 and stats.n_successful == 1


def test_sparse_failure_gets_failure_value():
    r = np.zeros(4)
    d = np.zeros(4)
    to = np.array([0, 0, 0, 1])
    obs, nxt = obs_chain(4)
    _, mc, stats = label_returns(r, d, to, ANTMAZE, 0.99, obs, nxt)
    np.testing.assert_allclose(mc, -500.0, rtol=1e-6)  # r_neg/(1-gamma) = -5/0.01
    assert stats.n_successful == 0 and stats.failure_value == pytest.approx(-500.0)


def test_timeout_ends_segment_but_is_not_terminal():
    # dense rewards 1,2 | 3 ; timeout after t=1 splits; G1 = 2 (tail 0, not cut by d), G0 = 1 + .9*2
    spec = RewardSpec()
    r = np.array([1.0, 2.0, 3.0])
    d = np.zeros(3)
    to = np.array([0, 1, 0])
    obs, nxt = obs_chain(3)
    _, mc, stats = label_returns(r, d, to, spec, G, obs, nxt)
    np.testing.assert_allclose(mc, [1 + 0.9 * 2, 2.0, 3.0], rtol=1e-6)
    assert stats.n_trajectories == 2 and stats.n_timeout_segments == 1 and stats.n_terminal_segments == 0


def test_discontinuity_split():
    spec = RewardSpec()
    r = np.array([1.0, 1.0, 1.0, 1.0])
    d = np.zeros(4)
    to = np.zeros(4)
    obs, nxt = obs_chain(4)
    nxt = nxt.copy()
    nxt[1] += 10.0  # next_obs[1] != obs[2]: a jump in the data
    ends = segment_ends(d, to, obs, nxt)
    assert ends.tolist() == [False, True, False, True]
    _, mc, stats = label_returns(r, d, to, spec, G, obs, nxt)
    np.testing.assert_allclose(mc, [1.9, 1.0, 1.9, 1.0], rtol=1e-6)
    assert stats.n_discontinuity_splits == 1 and stats.n_trajectories == 2


def test_infinite_horizon_tail():
    spec = RewardSpec(infinite_horizon=True)
    # not terminal: G2 = r2 + g * r2/(1-g) = r2/(1-g) = 20 ; G1 = 1 + .9*20 = 19 ; G0 = 0 + .9*19
    tr, mc = mc_returns_for_episode(np.array([0.0, 1.0, 2.0]), np.zeros(3), spec, G)
    np.testing.assert_allclose(mc, [17.1, 19.0, 20.0], rtol=1e-6)
    # a terminal last step gets G_T = r_T
    _, mc_t = mc_returns_for_episode(np.array([0.0, 2.0]), np.array([0, 1]), spec, G)
    np.testing.assert_allclose(mc_t, [1.8, 2.0], rtol=1e-6)


def test_reward_scale_before_failure_check_adroit():
    # Adroit-binary: raw -1 fail / 0 success, scale 10 bias +5 -> {-5, +5}; all-fail -> -500
    spec = RewardSpec(scale=10.0, bias=5.0, sparse=True, negative_reward=-1.0)
    tr, mc = mc_returns_for_episode(-np.ones(3), np.zeros(3), spec, 0.99)
    np.testing.assert_allclose(tr, -5.0)
    np.testing.assert_allclose(mc, -500.0, rtol=1e-6)


def test_segments_are_independent():
    # success segment then failure segment in one dataset
    r = np.array([0, 1.0, 0, 0])
    d = np.array([0, 1, 0, 0])
    to = np.array([0, 0, 0, 1])
    obs, nxt = obs_chain(4)
    _, mc, stats = label_returns(r, d, to, ANTMAZE, 0.99, obs, nxt)
    np.testing.assert_allclose(mc, [-5 + 0.99 * 5, 5, -500, -500], rtol=1e-6)
    assert stats.n_successful == 1 and stats.n_trajectories == 2
    assert stats.success_share == pytest.approx(0.5)


def test_segment_returns_empty():
    assert segment_returns(np.zeros(0), np.zeros(0), 0.99, RewardSpec()).shape == (0,)
