"""Every loss of every method, as small pure functions on tensors (testable on hand-made cases).

Shapes: B = batch, N = sampled actions per set, A = action dim. Q-values of sampled actions are
[B, N]; per-transition quantities are [B]. Nothing here touches parameters or optimizers; the
agents decide what is detached. Sources are the official Cal-QL code (docs/method.md#sac-backbone,
#cql-critic-loss, #cal-ql-bound) and the baselines' code (docs/method.md#baseline-hyperparameters,
docs/baselines.md).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# ----------------------------------------------------------------------------- SAC backbone


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Plain mean squared error (official `mse_loss`, no 1/2 factor)."""
    return (pred - target).square().mean()


def sac_actor_loss(log_pi: Tensor, q_pi: Tensor, alpha: Tensor | float) -> Tensor:
    """E[alpha * log pi(a|s) - min_i Q_i(s, a)], a reparameterized; alpha is a constant here."""
    return (alpha * log_pi - q_pi).mean()


def sac_alpha_loss(log_alpha: Tensor, log_pi: Tensor, target_entropy: float) -> Tensor:
    """-log alpha * mean(log pi + H_target): official form (on log alpha, not alpha)."""
    return -log_alpha * (log_pi + target_entropy).mean()


def max_target_backup(target_q: Tensor, next_log_pi: Tensor) -> tuple[Tensor, Tensor]:
    """Max over sampled next actions of the min-over-critics target Q ([B, N] -> [B]).

    Returns the max value and the log-prob of the maximizing sample (used if backup_entropy).
    """
    idx = target_q.argmax(dim=1, keepdim=True)
    return target_q.gather(1, idx).squeeze(1), next_log_pi.gather(1, idx).squeeze(1)


def td_target(
    rewards: Tensor,
    dones: Tensor,
    next_value: Tensor,
    gamma: float,
    next_log_pi: Tensor | None = None,
    alpha: Tensor | float | None = None,
) -> Tensor:
    """y = r + gamma (1 - d) (V' - alpha log pi') ; the entropy term only if ``next_log_pi`` given."""
    if next_log_pi is not None:
        assert alpha is not None
        next_value = next_value - alpha * next_log_pi
    return rewards + (1.0 - dones) * gamma * next_value


# ----------------------------------------------------------------------------- CQL / Cal-QL


def uniform_log_density(act_dim: int) -> float:
    """log of the uniform density on [-1, 1]^A, i.e. log(0.5^A) (official `random_density`)."""
    return act_dim * math.log(0.5)


def calql_lower_bound(q_policy: Tensor, mc_returns: Tensor) -> Tensor:
    """Cal-QL's one change: max(Q(s, a_pi), G(s, a)) for policy-action values [B, N], G [B]."""
    return torch.maximum(q_policy, mc_returns.unsqueeze(1))


def bound_rate(q_policy: Tensor, mc_returns: Tensor) -> Tensor:
    """Fraction of [B, N] entries where Q < G (where the Cal-QL bound is active); a diagnostic."""
    return (q_policy < mc_returns.unsqueeze(1)).float().mean()


def cql_cat_is(
    q_rand: Tensor, q_next: Tensor, q_cur: Tensor, log_pi_next: Tensor, log_pi_cur: Tensor, act_dim: int
) -> Tensor:
    """Importance-sampled set: [Q_rand - log(0.5^A), Q_next - log pi_next, Q_cur - log pi_cur]."""
    return torch.cat([q_rand - uniform_log_density(act_dim), q_next - log_pi_next, q_cur - log_pi_cur], dim=1)


def cql_cat_raw(q_rand: Tensor, q_data: Tensor, q_next: Tensor, q_cur: Tensor) -> Tensor:
    """Set without importance sampling: raw [Q_rand, Q_data, Q_next, Q_cur], [B, 3N + 1]."""
    return torch.cat([q_rand, q_data.unsqueeze(1), q_next, q_cur], dim=1)


def cql_gap(cat: Tensor, q_data: Tensor, temp: float, clip_min: float, clip_max: float) -> Tensor:
    """mean_B clip(T * logsumexp(cat / T) - Q_data, clip_min, clip_max): the CQL 'diff'."""
    ood = torch.logsumexp(cat / temp, dim=1) * temp
    diff = ood - q_data
    if math.isfinite(clip_min) or math.isfinite(clip_max):
        diff = diff.clamp(
            min=clip_min if math.isfinite(clip_min) else None, max=clip_max if math.isfinite(clip_max) else None
        )
    return diff.mean()


def cql_alpha_prime(log_alpha_prime: Tensor) -> Tensor:
    """alpha' = clip(exp(log alpha'), 0, 1e6) (official)."""
    return log_alpha_prime.exp().clamp(0.0, 1e6)


def cql_lagrange_losses(
    log_alpha_prime: Tensor, gaps: list[Tensor], weight: float, target_gap: float
) -> tuple[list[Tensor], Tensor, Tensor]:
    """Lagrange CQL: per-critic penalties alpha' w (gap_i - tau) and the alpha' loss.

    The critic penalties use a detached alpha' (a constant for the critics) and the alpha' loss
    -1/2 sum_i alpha' w (gap_i - tau) uses detached gaps, so one backward over the sum of all
    losses gives each parameter exactly its official gradient. Returns (penalties, alpha'
    loss, alpha').
    """
    alpha_prime = cql_alpha_prime(log_alpha_prime)
    a_const = alpha_prime.detach()
    penalties = [a_const * weight * (g - target_gap) for g in gaps]
    alpha_prime_loss = -0.5 * sum(alpha_prime * weight * (g.detach() - target_gap) for g in gaps)
    return penalties, alpha_prime_loss, alpha_prime


# ----------------------------------------------------------------------------- IQL


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """mean(|tau - 1(diff < 0)| diff^2), diff = Q - V (IQL value loss)."""
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return (weight * diff.square()).mean()


def awr_weights(advantage: Tensor, beta: float, max_weight: float = 100.0) -> Tensor:
    """exp(beta * (Q - V)) clipped above at ``max_weight`` (IQL policy extraction)."""
    return torch.exp(advantage * beta).clamp(max=max_weight)


def weighted_nll(weights: Tensor, log_prob: Tensor) -> Tensor:
    """-mean(w * log pi(a_data|s)) with constant weights (IQL actor loss)."""
    return -(weights * log_prob).mean()


# ----------------------------------------------------------------------------- AWAC


def awac_advantage(q_data: Tensor, q_policy: Tensor) -> Tensor:
    """A(s, a) = Q(s, a) - V(s) with V(s) = min_j mean_k Q_j(s, a_k), a_k ~ pi(s) ([B], [J, B, K] -> [B]).

    AWAC-F (jaxrl `awac/value.py`) averages each critic over the samples, then takes the min; with
    one sample (CORL) this is min_j Q_j(s, a~pi). ``q_data`` is already min_j Q_j(s, a_data).
    """
    return q_data - q_policy.mean(dim=2).amin(dim=0)


def softmax_weights(advantage: Tensor, temperature: float) -> Tensor:
    """B * softmax_batch(A / lambda), [B] -> [B] (mean 1). AWAC-F's actor loss -sum(softmax(A / lambda)
    log pi) is then the weighted NLL -mean(w log pi) of :func:`weighted_nll`."""
    return torch.softmax(advantage / temperature, dim=0) * advantage.shape[0]


# ----------------------------------------------------------------------------- RLPD


def ensemble_mse(q: Tensor, target: Tensor) -> Tensor:
    """mean over members and batch of (Q_e - y)^2, [E, B] and [B] (RLPD `critic_loss`: the mean, not
    the sum, over the ensemble)."""
    return (q - target.unsqueeze(0)).square().mean()


def rlpd_temperature_loss(log_temp: Tensor, entropy: Tensor, target_entropy: float) -> Tensor:
    """temperature * (H - H_target) with temperature = exp(log_temp) and a constant entropy estimate H
    (RLPD `update_temperature`: the loss is on the temperature, not on its log as in SAC's)."""
    return log_temp.exp() * (entropy - target_entropy)
