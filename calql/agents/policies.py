"""Policies: the official tanh-Gaussian (SAC/CQL/Cal-QL) and IQL-F's Gaussian with tanh means.

Sampling takes the noise ``eps`` as an argument, so the agent draws all noise of one update in
one call from its own generator (reproducible, checkpointable) and tests can pass fixed noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from calql.agents.networks import MLP

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def gaussian_log_prob_from_eps(eps: Tensor, log_std: Tensor) -> Tensor:
    """log N(mean + std*eps; mean, std) summed over the last axis: -eps^2/2 - log std - log(2 pi)/2."""
    return (-0.5 * eps.square() - log_std - 0.5 * _LOG_2PI).sum(-1)


def tanh_log_det_jacobian(pre_tanh: Tensor) -> Tensor:
    """log |d tanh(x)/dx| = 2 (log 2 - x - softplus(-2x)), summed over the last axis (stable form)."""
    return (2.0 * (_LOG_2 - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)


class TanhGaussianPolicy(nn.Module):
    """Official policy: MLP -> (mean, raw log-std); log_std = m * raw + o (m, o learnable scalars,
    init 1 and -1), clipped to [-20, 2]; a = tanh(mean + std * eps); deterministic a = tanh(mean)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...],
        orthogonal_init: bool = True,
        log_std_multiplier: float = 1.0,
        log_std_offset: float = -1.0,
    ) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.net = MLP(obs_dim, hidden, 2 * act_dim, orthogonal_init, out_gain=1e-2)
        self.log_std_multiplier = nn.Parameter(torch.tensor(float(log_std_multiplier)))
        self.log_std_offset = nn.Parameter(torch.tensor(float(log_std_offset)))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log_std), each [B, A]."""
        mean, raw = self.net(obs).chunk(2, dim=-1)
        log_std = (self.log_std_multiplier * raw + self.log_std_offset).clamp(-20.0, 2.0)
        return mean, log_std

    @staticmethod
    def sample(mean: Tensor, log_std: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """K reparameterized samples per state: mean/log_std [B, A], eps [B, K, A] -> a [B, K, A], log pi [B, K]."""
        mean, log_std = mean.unsqueeze(1), log_std.unsqueeze(1)
        pre = mean + log_std.exp() * eps
        log_prob = gaussian_log_prob_from_eps(eps, log_std) - tanh_log_det_jacobian(pre)
        return torch.tanh(pre), log_prob

    def deterministic(self, obs: Tensor) -> Tensor:
        return torch.tanh(self(obs)[0])

    @staticmethod
    def act(policy: nn.Module, obs: Tensor, deterministic: bool, randn: Callable[..., Tensor]) -> Tensor:
        """Actions of any (mean, log_std) tanh-Gaussian ``policy`` for obs [B, O]: tanh(mean), or one
        sample with noise from ``randn`` (the agent's generator)."""
        mean, log_std = policy(obs)
        if deterministic:
            return torch.tanh(mean)
        return TanhGaussianPolicy.sample(mean, log_std, randn(obs.shape[0], 1, mean.shape[-1]))[0][:, 0]


class IQLPolicy(nn.Module):
    """IQL-F policy: N(tanh(MLP(s)), exp(log_std)) with a state-independent log-std (init 0,
    clipped to [log_std_min, log_std_max]); not a squashed distribution; deterministic = mean."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...],
        dropout: float = 0.0,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        # jaxrl's default_init is orthogonal(sqrt 2) for every layer, output included.
        self.net = MLP(obs_dim, hidden, act_dim, True, out_gain=math.sqrt(2.0), dropout=dropout)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        mean = torch.tanh(self.net(obs, generator))
        return mean, self.log_std.clamp(self.log_std_min, self.log_std_max).expand_as(mean)

    @staticmethod
    def log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
        """log N(actions; mean, exp(log_std)) summed over the action axis, [B]."""
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - 0.5 * _LOG_2PI).sum(-1)


class GaussianPolicy(nn.Module):
    """AWAC actor: N(mean(s), exp(log_std)) with a state-independent log-std (init 0, clipped to
    [log_std_min, log_std_max]); not squashed; deterministic = mean.

    CORL: mean = MLP(s), torch's default init. AWAC-F (jaxrl NormalTanhPolicy with
    tanh_squash_distribution=False): mean = tanh(MLP(s)), orthogonal init with gain 1 on the output.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...],
        tanh_mean: bool,
        orthogonal_init: bool,
        log_std_min: float,
        log_std_max: float,
    ) -> None:
        super().__init__()
        self.net = MLP(obs_dim, hidden, act_dim, orthogonal_init, out_gain=1.0)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.tanh_mean = tanh_mean
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log_std), each [B, A]."""
        mean = self.net(obs)
        if self.tanh_mean:
            mean = torch.tanh(mean)
        return mean, self.log_std.clamp(self.log_std_min, self.log_std_max).expand_as(mean)

    @staticmethod
    def sample(mean: Tensor, log_std: Tensor, eps: Tensor) -> Tensor:
        """K samples per state: mean/log_std [B, A], eps [B, K, A] -> [B, K, A] (unclipped)."""
        return mean.unsqueeze(1) + log_std.exp().unsqueeze(1) * eps

    log_prob = staticmethod(IQLPolicy.log_prob)


class TanhNormalPolicy(nn.Module):
    """RLPD's actor (`rlpd/distributions/tanh_normal.py`, TanhNormal over a ReLU MLP with activate_final,
    no LayerNorm): separate Dense heads for the mean and a state-dependent log-std clipped to
    [log_std_min, log_std_max]; a = tanh(mean + std * eps); deterministic a = tanh(mean) (its mode).
    Every kernel xavier-uniform (RLPD `default_init`), biases zero."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], log_std_min: float, log_std_max: float
    ) -> None:
        super().__init__()
        self.net = MLP(obs_dim, hidden, 2 * act_dim, orthogonal_init=False)
        for layer in self.net.hidden:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        with torch.no_grad():  # two heads of act_dim outputs each: xavier bounds of [H, A], not [H, 2A]
            for head in self.net.out.weight.chunk(2, dim=0):
                nn.init.xavier_uniform_(head)
            nn.init.zeros_(self.net.out.bias)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log_std), each [B, A]."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    sample = staticmethod(TanhGaussianPolicy.sample)
    act = staticmethod(TanhGaussianPolicy.act)

    def deterministic(self, obs: Tensor) -> Tensor:
        return torch.tanh(self(obs)[0])
