"""Each loss of calql.agents.losses / policies on hand-computed tiny cases (docs/method.md: SAC backbone,
CQL critic loss, Cal-QL bound, baseline hyperparameters)."""

import math

import pytest
import torch

from calql.agents import losses as L
from calql.agents.policies import IQLPolicy, TanhGaussianPolicy

torch.set_num_threads(1)


def t(x):
    return torch.tensor(x, dtype=torch.float32)


# ---------------------------------------------------------------- SAC backbone


def test_mse_has_no_half_factor():
    assert L.mse(t([1.0, 3.0]), t([0.0, 0.0])).item() == pytest.approx(5.0)


def test_sac_alpha_loss_value_and_gradient_sign():
    log_alpha = torch.tensor(0.5, requires_grad=True)
    log_pi = t([-1.0, -3.0])  # entropy estimate 2 > target entropy -2 -> alpha must shrink
    loss = L.sac_alpha_loss(log_alpha, log_pi, target_entropy=-2.0)
    # -(0.5) * (mean(log pi) + H) = -0.5 * (-2 - 2) = 2
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(4.0)  # > 0: gradient descent lowers log alpha


def test_sac_actor_loss():
    # mean(alpha log pi - q) = mean(0.5*-1 - 2, 0.5*-3 - 0) = mean(-2.5, -1.5) = -2
    assert L.sac_actor_loss(t([-1.0, -3.0]), t([2.0, 0.0]), 0.5).item() == pytest.approx(-2.0)


def test_max_target_backup_hand_case():
    tq = t([[1.0, 3.0, 2.0], [5.0, 0.0, -1.0]])
    lp = t([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    v, lp_max = L.max_target_backup(tq, lp)
    assert v.tolist() == [3.0, 5.0]
    assert lp_max.tolist() == pytest.approx([0.2, 0.4])


def test_td_target_terminal_and_entropy():
    y = L.td_target(t([1.0, 2.0]), t([0.0, 1.0]), t([10.0, 10.0]), 0.9)
    assert y.tolist() == pytest.approx([1.0 + 9.0, 2.0])
    y = L.td_target(t([1.0]), t([0.0]), t([10.0]), 0.9, next_log_pi=t([-2.0]), alpha=0.5)
    assert y.item() == pytest.approx(1.0 + 0.9 * (10.0 + 1.0))


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    mean, log_std = torch.randn(4, 3), torch.randn(4, 3) * 0.3 - 0.5
    eps = torch.randn(4, 5, 3)
    a, lp = TanhGaussianPolicy.sample(mean, log_std, eps)
    base = torch.distributions.Normal(mean.unsqueeze(1), log_std.exp().unsqueeze(1))
    pre = mean.unsqueeze(1) + log_std.exp().unsqueeze(1) * eps
    ref = base.log_prob(pre).sum(-1) - torch.log(1 - torch.tanh(pre) ** 2).sum(-1)
    assert torch.allclose(a, torch.tanh(pre))
    assert torch.allclose(lp, ref, atol=1e-4)
    assert a.shape == (4, 5, 3) and lp.shape == (4, 5)


def test_tanh_policy_log_std_parameterization():
    pol = TanhGaussianPolicy(3, 2, (8,), log_std_multiplier=1.0, log_std_offset=-1.0)
    with torch.no_grad():
        pol.net.out.weight.zero_()
        pol.net.out.bias.copy_(t([0.0, 0.0, 30.0, -40.0]))  # raw log-std 30 and -40 -> clipped
    mean, log_std = pol(torch.zeros(1, 3))
    assert log_std.tolist() == [[2.0, -20.0]]  # 1*30-1 -> 2 (clip), 1*-40-1 -> -20 (clip)
    assert pol.log_std_multiplier.requires_grad and pol.log_std_offset.requires_grad


def test_iql_policy_log_prob_and_tanh_mean():
    mean, log_std = t([[0.2, -0.3]]), t([[-1.0, 0.5]])
    a = t([[0.5, 0.5]])
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(a).sum(-1)
    assert torch.allclose(IQLPolicy.log_prob(mean, log_std, a), ref)
    pol = IQLPolicy(3, 2, (8,))
    m, ls = pol(torch.randn(5, 3) * 100)
    assert m.abs().max() <= 1.0 and torch.equal(ls, torch.zeros(5, 2))


# ---------------------------------------------------------------- CQL / Cal-QL


def test_uniform_log_density():
    assert L.uniform_log_density(2) == pytest.approx(math.log(0.25))
    assert L.uniform_log_density(8) == pytest.approx(math.log(0.5**8))


def test_importance_sampled_set_hand_case():
    cat = L.cql_cat_is(
        q_rand=t([[1.0, 2.0]]),
        q_next=t([[0.0, 4.0]]),
        q_cur=t([[3.0, -1.0]]),
        log_pi_next=t([[-1.0, 2.0]]),
        log_pi_cur=t([[0.5, 0.0]]),
        act_dim=2,
    )
    ld = math.log(0.25)
    assert cat.tolist()[0] == pytest.approx([1 - ld, 2 - ld, 1.0, 2.0, 2.5, -1.0])


def test_raw_set_includes_data_action():
    cat = L.cql_cat_raw(t([[1.0]]), t([7.0]), t([[2.0]]), t([[3.0]]))
    assert cat.tolist() == [[1.0, 7.0, 2.0, 3.0]]


def test_cql_gap_logsumexp_temperature_and_clip():
    cat = t([[0.0, math.log(3.0)]])
    assert L.cql_gap(cat, t([1.0]), 1.0, -math.inf, math.inf).item() == pytest.approx(math.log(4.0) - 1.0)
    # T logsumexp(x / T), T = 2: 2 log(1 + sqrt(3))
    assert L.cql_gap(cat, t([0.0]), 2.0, -math.inf, math.inf).item() == pytest.approx(2 * math.log(1 + math.sqrt(3)))
    # per-state clip before the batch mean
    cat2 = t([[0.0, 0.0], [0.0, 0.0]])
    g = L.cql_gap(cat2, t([100.0, 0.0]), 1.0, -1.0, math.inf)
    assert g.item() == pytest.approx((-1.0 + math.log(2.0)) / 2)


def test_calql_bound_hand_case_and_rate():
    q = t([[1.0, 5.0], [-3.0, 0.0]])
    g = t([2.0, -1.0])
    assert L.calql_lower_bound(q, g).tolist() == [[2.0, 5.0], [-1.0, 0.0]]
    assert L.bound_rate(q, g).item() == pytest.approx(0.5)


def test_calql_bound_is_identity_when_q_above_return():
    q = t([[1.0, 5.0], [-3.0, 0.0]])
    g = t([1.0, -3.0])  # Q >= G everywhere (ties included)
    assert torch.equal(L.calql_lower_bound(q, g), q)
    assert L.bound_rate(q, g).item() == 0.0


def test_lagrange_alpha_prime_gradient_sign_and_isolation():
    for gap_value, sign in ((2.0, -1.0), (0.5, 1.0)):
        log_ap = torch.tensor(0.0, requires_grad=True)
        gaps = [torch.tensor(gap_value, requires_grad=True), torch.tensor(gap_value, requires_grad=True)]
        pens, ap_loss, ap = L.cql_lagrange_losses(log_ap, gaps, weight=5.0, target_gap=1.0)
        assert ap.item() == pytest.approx(1.0)
        # alpha' loss = -1/2 * 2 * alpha' w (gap - tau); d/dlog alpha' = -w (gap - tau)
        assert ap_loss.item() == pytest.approx(-5.0 * (gap_value - 1.0))
        ap_loss.backward(retain_graph=True)
        assert math.copysign(1.0, log_ap.grad.item()) == sign  # descent raises alpha' iff gap > tau
        assert log_ap.grad.item() == pytest.approx(-5.0 * (gap_value - 1.0))
        assert gaps[0].grad is None  # the alpha' loss does not move the critics
        log_ap.grad = None
        sum(pens).backward()
        assert log_ap.grad is None  # the penalties treat alpha' as a constant
        assert gaps[0].grad.item() == pytest.approx(5.0)  # alpha' * w


def test_alpha_prime_initial_value_and_clip():
    assert L.cql_alpha_prime(torch.tensor(1.0)).item() == pytest.approx(math.e)
    assert L.cql_alpha_prime(torch.tensor(100.0)).item() == pytest.approx(1e6)


# ---------------------------------------------------------------- IQL


def test_expectile_loss_hand_case():
    # diff = Q - V = [1, -2], tau = 0.9: (0.9 * 1 + 0.1 * 4) / 2 = 0.65
    assert L.expectile_loss(t([1.0, -2.0]), 0.9).item() == pytest.approx(0.65)
    # tau = 0.5 is half the MSE
    assert L.expectile_loss(t([1.0, -2.0]), 0.5).item() == pytest.approx(0.5 * 2.5)


def test_awr_weights_clip_and_nll():
    w = L.awr_weights(t([0.0, 1.0, -1.0]), beta=10.0, max_weight=100.0)
    assert w.tolist() == pytest.approx([1.0, 100.0, math.exp(-10.0)])
    assert L.weighted_nll(t([1.0, 2.0]), t([-1.0, -2.0])).item() == pytest.approx(2.5)


# ---------------------------------------------------------------- AWAC


def test_awac_advantage_min_over_critics_of_sample_means():
    q_data = t([1.0, 2.0])
    # critic 1 sample means [1, 1], critic 2 [3, 0] -> V = [1, 0]
    q_policy = t([[[0.0, 2.0], [1.0, 1.0]], [[3.0, 3.0], [-1.0, 1.0]]])
    assert L.awac_advantage(q_data, q_policy).tolist() == pytest.approx([0.0, 2.0])


def test_softmax_weights_are_batch_normalized_and_give_awac_f_loss():
    adv = t([0.0, math.log(3.0)])
    assert L.softmax_weights(adv, 1.0).tolist() == pytest.approx([0.5, 1.5])  # 2 * [1/4, 3/4]
    w = L.softmax_weights(adv, 0.5)  # exp(2 log 3) = 9 -> 2 * [0.1, 0.9]
    assert w.tolist() == pytest.approx([0.2, 1.8])
    log_prob = t([-1.0, -2.0])
    # AWAC-F: -sum(softmax * log pi) = -(0.1 * -1 + 0.9 * -2) = 1.9
    assert L.weighted_nll(w, log_prob).item() == pytest.approx(1.9)


# ---------------------------------------------------------------- RLPD


def test_ensemble_mse_is_the_mean_over_members():
    q = t([[1.0, 2.0], [3.0, 4.0]])  # [E=2, B=2]
    # squared errors against [1, 0]: [0, 4, 4, 16] -> mean 6 (a sum over members would give 12)
    assert L.ensemble_mse(q, t([1.0, 0.0])).item() == pytest.approx(6.0)


def test_rlpd_temperature_loss_is_on_the_temperature():
    log_temp = torch.tensor(math.log(2.0), requires_grad=True)
    loss = L.rlpd_temperature_loss(log_temp, t(1.0), target_entropy=-1.0)
    assert loss.item() == pytest.approx(4.0)  # 2 * (1 - (-1))
    loss.backward()
    assert log_temp.grad.item() == pytest.approx(4.0)  # d/dlog T of T (H - H_t) = T (H - H_t) > 0: T shrinks
