"""IQL as in the first author's fork (IQL-F: nakamotoo/implicit_q_learning dev_mitsuhiko @ 0b14c52,
docs/baselines.md), update order of jaxrl's IQL learner:

1. value: expectile loss of min_j Qbar_j(s, a) - V(s), one Adam step;
2. actor: -mean(exp(beta (Qbar(s, a) - V_new(s))) clipped at max_weight * log pi(a|s)) and
3. critics: sum_j mse(Q_j(s, a), r + gamma (1 - d) V_new(s')), both using the *updated* V,
   applied together (disjoint parameters, one backward);
4. soft update of the target critics.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

import calql.agents.losses as L
from calql.agents.base import Agent, make_adam
from calql.agents.hyperparameters import IQLConfig
from calql.agents.networks import Critic, ValueNet, soft_update, twin_min
from calql.agents.policies import IQLPolicy

_SQRT2 = 2.0**0.5


class IQLAgent(Agent):
    """Implicit Q-learning: expectile value, twin Q with target, advantage-weighted actor."""

    method = "iql"
    cfg: IQLConfig

    def __init__(self, obs_dim: int, act_dim: int, config: IQLConfig, device: str | torch.device) -> None:
        super().__init__(obs_dim, act_dim, config, device)
        self.policy = IQLPolicy(
            obs_dim, act_dim, config.hidden, config.dropout, config.log_std_min, config.log_std_max
        ).to(self.device)
        # jaxrl initializes every layer, outputs included, orthogonal with gain sqrt(2).
        self.critics = nn.ModuleList(Critic(obs_dim, act_dim, config.hidden, True, out_gain=_SQRT2) for _ in range(2))
        self.critics.to(self.device)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.value = ValueNet(obs_dim, config.hidden).to(self.device)
        self.value_optimizer = make_adam(
            [{"params": list(self.value.parameters()), "lr": config.value_lr}], self.device
        )
        self.optimizer = make_adam(
            [
                {"params": list(self.policy.parameters()), "lr": config.actor_lr},
                {"params": list(self.critics.parameters()), "lr": config.critic_lr},
            ],
            self.device,
        )
        self._online = list(self.critics.parameters())
        self._target = list(self.target_critics.parameters())

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg = self.cfg
        obs, act, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
        b = obs.shape[0]
        data_action = act.unsqueeze(1)
        with torch.no_grad():
            target_q = twin_min(self.target_critics, obs, data_action).squeeze(1)

        v = self.value(obs)
        value_loss = L.expectile_loss(target_q - v, cfg.expectile)
        self.value_optimizer.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_optimizer.step()

        with torch.no_grad():
            v_all = self.value(torch.cat([obs, next_obs], dim=0))
            v_new, next_v = v_all[:b], v_all[b:]
            advantage = target_q - v_new
            weights = L.awr_weights(advantage, cfg.beta, cfg.max_weight)
            target = L.td_target(batch["rewards"], batch["dones"], next_v, cfg.gamma)

        self.policy.train()
        mean, log_std = self.policy(obs, self.generator)
        actor_loss = L.weighted_nll(weights, IQLPolicy.log_prob(mean, log_std, act))
        q1, q2 = (critic(obs, data_action).squeeze(1) for critic in self.critics)
        critic_loss = L.mse(q1, target) + L.mse(q2, target)
        self.optimizer.zero_grad(set_to_none=True)
        (actor_loss + critic_loss).backward()
        self.optimizer.step()
        soft_update(self._target, self._online, cfg.tau)
        self.num_updates += 1
        return {
            "value_loss": value_loss.detach(),
            "critic_loss": critic_loss.detach(),
            "policy_loss": actor_loss.detach(),
            "v": v.detach().mean(),
            "q_data": q1.detach().mean(),
            "adv": advantage.mean(),
            "adv_weight": weights.mean(),
        }

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        o, single = self._as_obs(obs)
        self.policy.eval()
        mean, log_std = self.policy(o)
        if deterministic:
            a = mean
        else:
            std = torch.full_like(mean, self.cfg.exploration_std) if self.cfg.exploration_std else log_std.exp()
            a = (mean + std * self._randn(*mean.shape)).clamp(-1.0, 1.0)
        return a[0] if single else a

    @torch.no_grad()
    def policy_q(self, obs: Tensor) -> Tensor:
        o, _ = self._as_obs(obs)
        self.policy.eval()
        a = self.policy(o)[0].unsqueeze(1)
        return twin_min(self.critics, o, a).squeeze(1)

    def _modules(self) -> dict[str, nn.Module]:
        return {
            "policy": self.policy,
            "critics": self.critics,
            "target_critics": self.target_critics,
            "value": self.value,
        }

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"value_optimizer": self.value_optimizer, "optimizer": self.optimizer}
