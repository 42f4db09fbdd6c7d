"""MLPs and Q-functions shared by all methods.

Critics evaluate many actions per state at once: ``Critic(obs [B, O], actions [B, K, A]) ->
[B, K]``. The first layer is split, W [s; a] = W_s s + W_a a, so the state part is computed once
per state instead of once per (state, action) row; that is mathematically the same network as
the official concat-MLP (the split weights are initialized as one orthogonal matrix) but saves
most of the first layer's work for the 1 + 3N action rows of the CQL update.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def init_linear(layer: nn.Linear, gain: float, orthogonal: bool) -> None:
    """Orthogonal weights with ``gain`` and zero bias (official `orthogonal_init`), else torch's default."""
    if orthogonal:
        nn.init.orthogonal_(layer.weight, gain=gain)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


class MLP(nn.Module):
    """ReLU MLP; hidden gain sqrt(2), output gain ``out_gain``; optional dropout after hidden layers."""

    def __init__(
        self,
        in_dim: int,
        hidden: tuple[int, ...],
        out_dim: int,
        orthogonal_init: bool = True,
        out_gain: float = 1e-2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        sizes = [in_dim, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], out_dim)
        for layer in self.hidden:
            init_linear(layer, math.sqrt(2.0), orthogonal_init)
        init_linear(self.out, out_gain, orthogonal_init)
        self.dropout = dropout

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Dropout (training mode only) draws its mask from ``generator`` so that the agent's
        checkpointed RNG, not the global one, decides it."""
        for layer in self.hidden:
            x = layer(x).relu_()
            if self.dropout > 0.0 and self.training:
                keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.dropout
                x = x * keep / (1.0 - self.dropout)
        return self.out(x)


class Critic(nn.Module):
    """Q(s, a) MLP on concat(s, a), evaluated for K actions per state: [B, O], [B, K, A] -> [B, K]."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...],
        orthogonal_init: bool = True,
        out_gain: float = 1e-2,
    ) -> None:
        super().__init__()
        h0 = hidden[0]
        self.obs_dim = obs_dim
        self.obs_in = nn.Linear(obs_dim, h0)
        # Stored as [A, H] (x @ W): its weight gradient is then a^T g, [A, BK] @ [BK, H], which
        # is ~5x faster on CPU than the g^T a that nn.Linear's [H, A] layout produces.
        self.act_in = nn.Parameter(torch.empty(act_dim, h0))
        full = nn.Linear(obs_dim + act_dim, h0)
        init_linear(full, math.sqrt(2.0), orthogonal_init)
        with torch.no_grad():  # one matrix over [s; a], split in two: same init as the concat MLP
            self.obs_in.weight.copy_(full.weight[:, :obs_dim])
            self.obs_in.bias.copy_(full.bias)
            self.act_in.copy_(full.weight[:, obs_dim:].t())
        sizes = list(hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for layer in self.hidden:
            init_linear(layer, math.sqrt(2.0), orthogonal_init)
        self.out = nn.Linear(sizes[-1], 1)
        init_linear(self.out, out_gain, orthogonal_init)

    def forward(self, obs: Tensor, actions: Tensor, detach_params: bool = False) -> Tensor:
        """Q-values [B, K]. ``detach_params``: gradients reach the actions only, not the weights
        (the actor's loss uses the critics as constants, as in the official per-loss gradients)."""
        params = [self.obs_in.weight, self.obs_in.bias, self.act_in]
        for layer in self.hidden:
            params += [layer.weight, layer.bias]
        params += [self.out.weight, self.out.bias]
        if detach_params:
            params = [p.detach() for p in params]
        b, k, a = actions.shape
        # In-place ReLUs are safe here: add/addmm do not need their outputs for backward.
        h = torch.mm(actions.reshape(b * k, a), params[2]).view(b, k, -1)
        h = (h + F.linear(obs, params[0], params[1]).unsqueeze(1)).relu_().view(b * k, -1)
        i = 3
        for _ in self.hidden:
            h = F.linear(h, params[i], params[i + 1]).relu_()
            i += 2
        return F.linear(h, params[i], params[i + 1]).view(b, k)


def twin_min(critics: nn.ModuleList, obs: Tensor, actions: Tensor, **kwargs: Any) -> Tensor:
    """min(Q_1(s, a), Q_2(s, a)) of twin critics, [B, K] (critic 1 evaluated first); ``kwargs`` go to
    both critics (e.g. ``detach_params=True`` for the actor's loss). The one place the twin-critic
    methods (SAC, CQL, Cal-QL, IQL, AWAC) take this minimum."""
    return torch.minimum(critics[0](obs, actions, **kwargs), critics[1](obs, actions, **kwargs))


class ValueNet(nn.Module):
    """V(s) MLP -> [B] (IQL)."""

    def __init__(
        self, obs_dim: int, hidden: tuple[int, ...], orthogonal_init: bool = True, out_gain: float = math.sqrt(2.0)
    ) -> None:
        super().__init__()
        self.net = MLP(obs_dim, hidden, 1, orthogonal_init, out_gain)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


def soft_update(target: list[Tensor], source: list[Tensor], tau: float) -> None:
    """target <- (1 - tau) target + tau source, one fused foreach call."""
    with torch.no_grad():
        torch._foreach_lerp_(target, source, tau)


class EnsembleCritic(nn.Module):
    """E critics as one batched module (RLPD's vmapped `Ensemble` of `StateActionValue`):
    obs [B, O], actions [B, K, A] -> Q [E, B, K].

    Weights are stored stacked, [E, in, out], so every layer is one batched matmul over the members
    instead of a Python loop over E critics. Per member, as RLPD's MLP with activate_final: Dense ->
    LayerNorm (optional, eps 1e-6 as flax) -> ReLU for each hidden layer, then Dense(1); xavier-uniform
    kernels (over the concat [s; a] first layer, split as in :class:`Critic`), zero biases, LayerNorm
    scale 1 and offset 0.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], num_members: int, layer_norm: bool) -> None:
        super().__init__()
        self.num_members = num_members
        self.layer_norm = layer_norm
        sizes = [obs_dim + act_dim, *hidden, 1]

        def kernel(fan_in: int, fan_out: int) -> nn.Parameter:
            bound = math.sqrt(6.0 / (fan_in + fan_out))  # xavier uniform per member
            return nn.Parameter(torch.empty(num_members, fan_in, fan_out).uniform_(-bound, bound))

        first = kernel(sizes[0], sizes[1])
        self.obs_in = nn.Parameter(first.data[:, :obs_dim].clone())
        self.act_in = nn.Parameter(first.data[:, obs_dim:].clone())
        self.kernels = nn.ParameterList(kernel(a, b) for a, b in zip(sizes[1:-1], sizes[2:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(num_members, 1, b)) for b in sizes[1:])
        if layer_norm:
            self.norm_scales = nn.ParameterList(nn.Parameter(torch.ones(num_members, 1, h)) for h in hidden)
            self.norm_offsets = nn.ParameterList(nn.Parameter(torch.zeros(num_members, 1, h)) for h in hidden)

    def forward(
        self, obs: Tensor, actions: Tensor, members: Tensor | None = None, detach_params: bool = False
    ) -> Tensor:
        """Q-values [M, B, K] of the members with indices ``members`` ([M]; None = all E).
        ``detach_params``: gradients reach the actions only (the actor's loss)."""

        def pick(p: Tensor) -> Tensor:
            p = p if members is None else p.index_select(0, members)
            return p.detach() if detach_params else p

        b, k, a = actions.shape
        kernels = [pick(w) for w in self.kernels]
        biases = [pick(v) for v in self.biases]
        # First layer W [s; a] + bias = W_s s + W_a a + bias: the state part once per state.
        h_act = torch.matmul(actions.reshape(b * k, a), pick(self.act_in))  # [M, BK, H]
        m = h_act.shape[0]
        h_obs = torch.baddbmm(biases[0], obs.expand(m, -1, -1), pick(self.obs_in))  # [M, B, H]
        h = (h_act.view(m, b, k, -1) + h_obs.unsqueeze(2)).view(m, b * k, -1)
        for layer in range(len(kernels)):
            if layer > 0:
                h = torch.baddbmm(biases[layer], h, kernels[layer - 1])
            if self.layer_norm:
                h = F.layer_norm(h, h.shape[-1:], eps=1e-6)
                h = torch.addcmul(pick(self.norm_offsets[layer]), h, pick(self.norm_scales[layer]))
            h = h.relu()
        q = torch.baddbmm(biases[-1], h, kernels[-1])  # [M, BK, 1]
        return q.view(m, b, k)
