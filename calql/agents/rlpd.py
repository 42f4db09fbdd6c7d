"""RLPD (Ball et al. 2023) as in `ikostrikov/rlpd` `rlpd/agents/sac/sac_learner.py`, with the first
author's settings (RLPD-F: nakamotoo/rlpd @ 271d3d8, docs/baselines.md); the same loss offline and online.

RLPD's `update(batch, utd_ratio)` does utd_ratio critic steps on consecutive minibatches, then one
actor step and one temperature step on the last minibatch. Here the training loop calls `update`
once per minibatch, so each call does the critic step and every `actor_update_period`-th call
(counted by `num_updates`, which the checkpoint keeps) also the actor and temperature steps:

1. critics (every call): y = r + gamma (1 - d) min_{j in S} Qbar_j(s', a'), a' ~ pi(s') one sample,
   S a random subset of `num_min_qs` of the `num_qs` target members drawn once per step (the same
   for the whole batch); [- gamma (1 - d) temperature log pi(a'|s') if backup_entropy]; loss
   mean over members and batch of (Q_e(s, a) - y)^2; one Adam step; soft update of all targets;
2. actor (every k-th call), with the critics just updated: mean(temperature log pi(a|s) -
   mean_e Q_e(s, a)), a ~ pi(s) reparameterized; the mean over the *whole* ensemble, not a min;
3. temperature (same call): temperature * (H - H_target), H = -mean log pi of step 2 as a constant,
   H_target = -|A|/2. Steps 2 and 3 have disjoint parameters and constant cross terms, so they share
   one backward and one Adam step (two parameter groups), exactly RLPD's two separate gradients.

The critic ensemble is one batched module (:class:`EnsembleCritic`); the target evaluates only
the drawn subset. Between actor steps the actor's metrics repeat the last actor step's values
(kept in the checkpoint), so every call returns the same keys.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

import calql.agents.losses as L
from calql.agents.base import Agent, make_adam
from calql.agents.hyperparameters import RLPDConfig
from calql.agents.networks import EnsembleCritic, soft_update
from calql.agents.policies import TanhNormalPolicy

ACTOR_METRICS = ("policy_loss", "entropy", "temperature_loss")


class RLPDAgent(Agent):
    """Tanh-Gaussian actor, LayerNorm critic ensemble with random-subset min targets, learned temperature."""

    method = "rlpd"
    cfg: RLPDConfig

    def __init__(self, obs_dim: int, act_dim: int, config: RLPDConfig, device: str | torch.device) -> None:
        super().__init__(obs_dim, act_dim, config, device)
        cfg = config
        self.policy = TanhNormalPolicy(obs_dim, act_dim, cfg.actor_hidden, cfg.log_std_min, cfg.log_std_max).to(
            self.device
        )
        self.critics = EnsembleCritic(obs_dim, act_dim, cfg.critic_hidden, cfg.num_qs, cfg.critic_layer_norm).to(
            self.device
        )
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_temp = nn.Parameter(torch.full((), math.log(cfg.init_temperature), device=self.device))
        self.target_entropy = -act_dim / 2.0 if cfg.target_entropy is None else float(cfg.target_entropy)
        self.critic_optimizer = make_adam(
            [{"params": list(self.critics.parameters()), "lr": cfg.critic_lr}], self.device
        )
        self.actor_optimizer = make_adam(
            [
                {"params": list(self.policy.parameters()), "lr": cfg.actor_lr},
                {"params": [self.log_temp], "lr": cfg.temp_lr},
            ],
            self.device,
        )
        self.last_actor_metrics = torch.zeros(len(ACTOR_METRICS), device=self.device)
        self._online = list(self.critics.parameters())
        self._target = list(self.target_critics.parameters())

    def updates_actor_next(self) -> bool:
        """Whether the next `update` call also steps the actor and temperature (the k-th, 2k-th, ... call)."""
        return (self.num_updates + 1) % self.cfg.actor_update_period == 0

    def _target_members(self) -> Tensor | None:
        """Indices of the target members of this critic step (None = all)."""
        cfg = self.cfg
        if cfg.num_min_qs == cfg.num_qs:
            return None
        order = torch.randperm(cfg.num_qs, generator=self.generator, device=self.device)
        return order[: cfg.num_min_qs]

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg = self.cfg
        obs, act, nxt = batch["observations"], batch["actions"], batch["next_observations"]
        b = obs.shape[0]
        with_actor = self.updates_actor_next()
        eps = self._randn(2 * b if with_actor else b, 1, self.act_dim)  # [:b] backup, [b:] actor
        members = self._target_members()

        # 1. critics
        with torch.no_grad():
            mean_next, log_std_next = self.policy(nxt)
            next_act, next_logp = TanhNormalPolicy.sample(mean_next, log_std_next, eps[:b])
            next_q = self.target_critics(nxt, next_act, members).amin(dim=0)[:, 0]
            target = L.td_target(
                batch["rewards"],
                batch["dones"],
                next_q,
                cfg.gamma,
                next_logp[:, 0] if cfg.backup_entropy else None,
                self.log_temp.exp(),
            )
        q_data = self.critics(obs, act.unsqueeze(1))[:, :, 0]  # [E, B]
        critic_loss = L.ensemble_mse(q_data, target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        soft_update(self._target, self._online, cfg.tau)

        # 2.-3. actor and temperature, with the updated critics
        if with_actor:
            mean, log_std = self.policy(obs)
            pi_act, logp = TanhNormalPolicy.sample(mean, log_std, eps[b:])
            logp = logp[:, 0]
            q_pi = self.critics(obs, pi_act, detach_params=True).mean(dim=0)[:, 0]
            policy_loss = L.sac_actor_loss(logp, q_pi, self.log_temp.exp().detach())
            entropy = -logp.detach().mean()
            temperature_loss = L.rlpd_temperature_loss(self.log_temp, entropy, self.target_entropy)
            self.actor_optimizer.zero_grad(set_to_none=True)
            (policy_loss + temperature_loss).backward()
            self.actor_optimizer.step()
            with torch.no_grad():
                self.last_actor_metrics.copy_(torch.stack([policy_loss, entropy, temperature_loss]))

        self.num_updates += 1
        metrics = {
            "critic_loss": critic_loss.detach(),
            "q_data": q_data.detach().mean(),
            "target_q": target.mean(),
            "temperature": self.log_temp.detach().exp(),
        }
        metrics.update(zip(ACTOR_METRICS, self.last_actor_metrics.clone().unbind()))
        return metrics

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        """tanh(mean) (RLPD `eval_actions`, the mode) or a tanh-Gaussian sample."""
        o, single = self._as_obs(obs)
        a = TanhNormalPolicy.act(self.policy, o, deterministic, self._randn)
        return a[0] if single else a

    @torch.no_grad()
    def q_value(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Ensemble mean of Q_e(s, a), [B]: the value RLPD's actor maximizes (its target instead uses
        the min over a random pair of target members, a random quantity)."""
        o, _ = self._as_obs(obs)
        a = torch.as_tensor(actions, dtype=torch.float32, device=self.device).reshape(o.shape[0], 1, -1)
        return self.critics(o, a).mean(dim=0)[:, 0]

    @torch.no_grad()
    def policy_q(self, obs: Tensor) -> Tensor:
        """Ensemble mean of Q_e(s, tanh(mean(s))), [B] (as :meth:`q_value`)."""
        o, _ = self._as_obs(obs)
        return self.q_value(o, self.policy.deterministic(o))

    def _modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy, "critics": self.critics, "target_critics": self.target_critics}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic_optimizer": self.critic_optimizer, "actor_optimizer": self.actor_optimizer}

    def _tensors(self) -> dict[str, Tensor]:
        return {"log_temp": self.log_temp, "last_actor_metrics": self.last_actor_metrics}
