"""AWAC (advantage-weighted actor-critic), the same loss offline and online.

Sources: CORL `algorithms/finetune/awac.py` (the defaults; corl-team/CORL @ eeeeef2) and the first
author's AWAC baseline AWAC-F (`nakamotoo/jaxrl` branch dev_mitsuhiko @ 1c7459c,
`jaxrl/agents/awac/`; docs/baselines.md), reached through the config. Both do, per update:

1. critics: sum_j mse(Q_j(s, a), r + gamma (1 - d) min_j Qbar_j(s', a')), a' ~ pi(s') one sample,
   no entropy term; one optimizer step;
2. actor, with the *updated* critics: A = min_j Q_j(s, a) - min_j mean_k Q_j(s, a_k), a_k ~ pi(s),
   constant weights w(A), loss -mean(w log pi(a|s)) on the dataset actions; one optimizer step;
3. soft update of the target critics (AWAC-F before step 2, CORL after it: the actor does not use
   the targets, so the order changes nothing).

Where they differ (CORL default / AWAC-F setting, see :class:`AWACConfig`):
- weights: min(exp(A / lambda), 100), mean over the batch / softmax over the batch of A / beta,
  summed (``advantage_weights``); lambda 0.1 / beta 1.0;
- actor: Gaussian mean = MLP(s) / tanh(MLP(s)); log-std clip [-20, 2] / [-10, 2]; 3 / 4 x 256;
  Adam / AdamW with weight decay 1e-4; torch default / orthogonal init;
- critics 3 / 4 x 256; policy samples clamped to [-1, 1] / unclipped; dataset actions in the actor
  step as they are / clipped to +-(1 - 1e-5).

The two steps stay sequential (the actor's weights need the updated critics), so there is nothing
to fuse; the one policy forward on [s; s'] serves the backup samples, V's samples and the actor.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

import calql.agents.losses as L
from calql.agents.base import Agent, make_adam
from calql.agents.hyperparameters import AWACConfig
from calql.agents.networks import Critic, soft_update, twin_min
from calql.agents.policies import GaussianPolicy


def make_adamw(params: list[nn.Parameter], lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW (decoupled decay, as optax.adamw: p -= lr (adam + wd p)) with the fused kernel on CPU/CUDA."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused, foreach=None if fused else True)


class AWACAgent(Agent):
    """Gaussian actor with state-independent log-std, twin critics with soft targets, AWR actor loss."""

    method = "awac"
    cfg: AWACConfig

    def __init__(self, obs_dim: int, act_dim: int, config: AWACConfig, device: str | torch.device) -> None:
        super().__init__(obs_dim, act_dim, config, device)
        cfg = config
        self.policy = GaussianPolicy(
            obs_dim, act_dim, cfg.actor_hidden, cfg.tanh_mean, cfg.orthogonal_init, cfg.log_std_min, cfg.log_std_max
        ).to(self.device)
        # jaxrl's critic output is orthogonal with gain sqrt(2) like its hidden layers (unused by CORL's init).
        self.critics = nn.ModuleList(
            Critic(obs_dim, act_dim, cfg.critic_hidden, cfg.orthogonal_init, out_gain=math.sqrt(2.0)) for _ in range(2)
        ).to(self.device)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.critic_optimizer = make_adam(
            [{"params": list(self.critics.parameters()), "lr": cfg.critic_lr}], self.device
        )
        self.actor_optimizer = make_adamw(
            list(self.policy.parameters()), cfg.actor_lr, cfg.actor_weight_decay, self.device
        )
        self._online = list(self.critics.parameters())
        self._target = list(self.target_critics.parameters())

    def _policy_samples(self, mean: Tensor, log_std: Tensor, eps: Tensor) -> Tensor:
        actions = GaussianPolicy.sample(mean, log_std, eps)
        return actions.clamp(-1.0, 1.0) if self.cfg.clip_policy_samples else actions

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg = self.cfg
        obs, act, nxt = batch["observations"], batch["actions"], batch["next_observations"]
        b = obs.shape[0]
        eps = self._randn(b, 1 + cfg.value_samples, self.act_dim)  # column 0: backup; 1..K: V(s)
        mean, log_std = self.policy(torch.cat([obs, nxt], dim=0))

        # 1. critics
        with torch.no_grad():
            next_act = self._policy_samples(mean[b:], log_std[b:], eps[:, :1])
            pi_act = self._policy_samples(mean[:b], log_std[:b], eps[:, 1:])
            target = L.td_target(
                batch["rewards"], batch["dones"], twin_min(self.target_critics, nxt, next_act)[:, 0], cfg.gamma
            )
        q1, q2 = (critic(obs, act.unsqueeze(1))[:, 0] for critic in self.critics)
        critic_loss = L.mse(q1, target) + L.mse(q2, target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        # 2. actor, with the updated critics
        data_act = act if cfg.data_action_clip is None else act.clamp(-cfg.data_action_clip, cfg.data_action_clip)
        with torch.no_grad():
            actions = torch.cat([data_act.unsqueeze(1), pi_act], dim=1)  # [B, 1 + K, A]
            q_all = torch.stack([critic(obs, actions) for critic in self.critics])  # [2, B, 1 + K]
            adv = L.awac_advantage(q_all[:, :, 0].amin(dim=0), q_all[:, :, 1:])
            if cfg.advantage_weights == "softmax":
                weights = L.softmax_weights(adv, cfg.awac_lambda)
            else:
                weights = L.awr_weights(adv, 1.0 / cfg.awac_lambda, cfg.max_weight)
        policy_loss = L.weighted_nll(weights, GaussianPolicy.log_prob(mean[:b], log_std[:b], data_act))
        self.actor_optimizer.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.actor_optimizer.step()

        # 3. targets
        soft_update(self._target, self._online, cfg.tau)
        self.num_updates += 1
        return {
            "critic_loss": critic_loss.detach(),
            "policy_loss": policy_loss.detach(),
            "q_data": q1.detach().mean(),
            "target_q": target.mean(),
            "adv": adv.mean(),
            "adv_weight": weights.mean(),  # 1 for the softmax weights (scaled by B)
            "adv_weight_max": weights.max(),
            "log_std": log_std[0].detach().mean(),
        }

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        """Mean (evaluation, both sources) or a Gaussian sample, clipped to [-1, 1]."""
        o, single = self._as_obs(obs)
        mean, log_std = self.policy(o)
        a = (
            mean
            if deterministic
            else GaussianPolicy.sample(mean, log_std, self._randn(o.shape[0], 1, self.act_dim))[:, 0]
        )
        a = a.clamp(-1.0, 1.0)
        return a[0] if single else a

    @torch.no_grad()
    def policy_q(self, obs: Tensor) -> Tensor:
        o, _ = self._as_obs(obs)
        a = self.policy(o)[0].clamp(-1.0, 1.0).unsqueeze(1)
        return twin_min(self.critics, o, a)[:, 0]

    def _modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy, "critics": self.critics, "target_critics": self.target_critics}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic_optimizer": self.critic_optimizer, "actor_optimizer": self.actor_optimizer}
