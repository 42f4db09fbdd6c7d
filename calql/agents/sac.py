"""SAC backbone of the official ConservativeSAC (docs/method.md#sac-backbone); method `sac` (SAC from scratch).

Update order. In the official JAX code every loss (policy, log alpha, each critic, log alpha')
is computed from the same pre-update parameters and differentiated only with respect to its own
parameters; all are applied in the same step. Here the losses are built so that their gradients
are disjoint by construction, then summed and back-propagated once:
- the actor's Q-values use detached critic weights (gradient reaches the actions only);
- the critics see detached policy samples and log-probs;
- the alpha loss sees a detached log pi, the actor a detached alpha;
- (CQL) the critics see a detached alpha', the alpha' loss detached gaps.
So one backward + one fused Adam step reproduces the official per-loss gradients exactly, with
one autograd pass instead of four. The target is computed under no_grad.

Forward passes per update: one policy pass on [s; s'] yielding every sample of the step (actor,
backup and, in CQL, both policy-action sets), one pass per critic over all actions evaluated at s,
one detached-weight pass per critic for the actor, one target pass per target critic.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

import calql.agents.losses as L
from calql.agents.base import Agent, make_adam
from calql.agents.hyperparameters import SACConfig
from calql.agents.networks import Critic, soft_update, twin_min
from calql.agents.policies import TanhGaussianPolicy

Metrics = dict[str, Tensor]


class SACAgent(Agent):
    """Tanh-Gaussian actor, twin critics with soft targets, automatic entropy tuning."""

    method = "sac"
    cfg: SACConfig

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: SACConfig,
        device: str | torch.device,
        other_critic_params: list[nn.Parameter] | None = None,
    ) -> None:
        """``other_critic_params``: further parameters trained by the critics' Adam group at
        ``qf_lr`` (CQL's Lagrange log alpha')."""
        super().__init__(obs_dim, act_dim, config, device)
        self.policy = TanhGaussianPolicy(
            obs_dim,
            act_dim,
            config.policy_hidden,
            config.orthogonal_init,
            config.policy_log_std_multiplier,
            config.policy_log_std_offset,
        ).to(self.device)
        self.critics = nn.ModuleList(
            Critic(obs_dim, act_dim, config.critic_hidden, config.orthogonal_init) for _ in range(2)
        ).to(self.device)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.zeros((), device=self.device))
        self.target_entropy = -float(act_dim) if config.target_entropy is None else float(config.target_entropy)
        self.n_backup = config.n_backup_actions()
        policy_group = list(self.policy.parameters())
        if config.use_automatic_entropy_tuning:
            policy_group.append(self.log_alpha)  # official: log alpha's Adam uses policy_lr
        critic_group = list(self.critics.parameters()) + list(other_critic_params or [])
        self.optimizer = make_adam(
            [{"params": policy_group, "lr": config.policy_lr}, {"params": critic_group, "lr": config.qf_lr}],
            self.device,
        )
        self._online = list(self.critics.parameters())
        self._target = list(self.target_critics.parameters())
        self._loss_fn: Callable[..., tuple[Tensor, Metrics]] = self._losses
        if config.compile:
            self._loss_fn = torch.compile(self._losses)
        self._on_mode()

    # ---- hooks for CQL -------------------------------------------------------------------
    def _n_state_samples(self) -> int:
        """Policy samples per state s: 1 for the actor (CQL adds N)."""
        return 1

    def _n_next_samples(self) -> int:
        """Policy samples per next state s': the backup's (CQL adds N)."""
        return self.n_backup

    def _critic_actions(
        self, batch: dict[str, Tensor], state_actions: Tensor, next_actions: Tensor, uniform_actions: Tensor | None
    ) -> Tensor:
        """Actions evaluated by each critic at s, [B, K, A]; column 0 is the data action. The policy
        samples at s and s' and the uniform actions are the update's (see :meth:`_losses`)."""
        return batch["actions"].unsqueeze(1)

    def _regularizer(
        self, q_all: list[Tensor], batch: dict[str, Tensor], state_logps: Tensor, next_logps: Tensor
    ) -> tuple[list[Tensor] | None, Tensor | None, Metrics]:
        """Per-critic penalties added to the Bellman losses, a loss of the other critic-group
        parameters (CQL's alpha'), metrics (SAC: none)."""
        return None, None, {}

    def _n_uniform_actions(self) -> int:
        """Uniform random actions per state s (CQL's set; SAC: none)."""
        return 0

    # ---- update ----------------------------------------------------------------------------
    def _draw_noise(self, batch_size: int) -> tuple[Tensor, Tensor | None]:
        """All randomness of one update, drawn from the agent's generator in two calls."""
        n_samples = max(self._n_state_samples(), self._n_next_samples())
        eps = self._randn(2 * batch_size, n_samples, self.act_dim)  # policy noise for [s; s']
        uniform_actions = None
        n_uniform = self._n_uniform_actions()
        if n_uniform:
            uniform_actions = torch.rand(
                batch_size, n_uniform, self.act_dim, generator=self.generator, device=self.device
            )
            uniform_actions = uniform_actions * 2.0 - 1.0
        return eps, uniform_actions

    def _alpha(self, log_pi: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.cfg.use_automatic_entropy_tuning:
            loss = L.sac_alpha_loss(self.log_alpha, log_pi.detach(), self.target_entropy)
            return self.log_alpha.exp().detach() * self.cfg.alpha_multiplier, loss
        return torch.full((), self.cfg.alpha_multiplier, device=self.device), None

    def _bellman_target(
        self, batch: dict[str, Tensor], next_actions: Tensor, next_logps: Tensor, alpha: Tensor
    ) -> Tensor:
        """r + gamma (1 - d) [max_k] min_j Qbar_j(s', a'_k) [- alpha log pi], no gradient."""
        next_obs = batch["next_observations"]
        backup_actions, backup_logps = next_actions[:, : self.n_backup], next_logps[:, : self.n_backup]
        target_q = twin_min(self.target_critics, next_obs, backup_actions)
        if self.cfg.max_target_backup:
            value, value_logp = L.max_target_backup(target_q, backup_logps)
        else:
            value, value_logp = target_q[:, 0], backup_logps[:, 0]
        return L.td_target(
            batch["rewards"],
            batch["dones"],
            value,
            self.cfg.gamma,
            value_logp if self.cfg.backup_entropy else None,
            alpha,
        )

    def _losses(self, batch: dict[str, Tensor], eps: Tensor, uniform_actions: Tensor | None) -> tuple[Tensor, Metrics]:
        """Total loss (sum of disjoint-gradient losses) and metrics; see the module docstring."""
        obs = batch["observations"]
        b = obs.shape[0]
        mean, log_std = self.policy(torch.cat([obs, batch["next_observations"]], dim=0))
        with torch.no_grad():  # every sample but the actor's is a constant: no autograd over them
            actions, logps = TanhGaussianPolicy.sample(mean, log_std, eps)
        # policy samples at s (the actor's first) and at s' (the backup's first), with log-probs
        state_actions, next_actions, state_logps, next_logps = actions[:b], actions[b:], logps[:b], logps[b:]

        # Entropy temperature and actor (critics as constants); the actor's sample is eps[:b, 0].
        a_pi, logp_pi = TanhGaussianPolicy.sample(mean[:b], log_std[:b], eps[:b, :1])
        logp_pi = logp_pi[:, 0]
        alpha, alpha_loss = self._alpha(logp_pi)
        q_pi = twin_min(self.critics, obs, a_pi, detach_params=True).squeeze(1)
        policy_loss = L.sac_actor_loss(logp_pi, q_pi, alpha)

        with torch.no_grad():
            target = self._bellman_target(batch, next_actions, next_logps, alpha)

        # Critics: one forward each over every action evaluated at s.
        critic_actions = self._critic_actions(batch, state_actions, next_actions, uniform_actions)
        q_all = [critic(obs, critic_actions) for critic in self.critics]
        bellman = [L.mse(q[:, 0], target) for q in q_all]
        penalties, regularizer_loss, metrics = self._regularizer(q_all, batch, state_logps, next_logps)
        qf_losses = bellman if penalties is None else [bl + pen for bl, pen in zip(bellman, penalties)]

        total = policy_loss + qf_losses[0] + qf_losses[1]
        if alpha_loss is not None:
            total = total + alpha_loss
            metrics["alpha_loss"] = alpha_loss.detach()
        if regularizer_loss is not None:
            total = total + regularizer_loss
        metrics.update(
            qf1_loss=qf_losses[0].detach(),
            qf2_loss=qf_losses[1].detach(),
            critic_loss=(qf_losses[0] + qf_losses[1]).detach(),
            policy_loss=policy_loss.detach(),
            alpha=alpha.detach(),
            log_pi=logp_pi.detach().mean(),
            q_data=q_all[0][:, 0].detach().mean(),
            target_q=target.mean(),
        )
        if penalties is not None:
            metrics["qf1_bellman_loss"] = bellman[0].detach()
            metrics["qf2_bellman_loss"] = bellman[1].detach()
        return total, metrics

    def update(self, batch: dict[str, Tensor]) -> Metrics:
        eps, uniform_actions = self._draw_noise(batch["observations"].shape[0])
        total, metrics = self._loss_fn(batch, eps, uniform_actions)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        soft_update(self._target, self._online, self.cfg.tau)
        self.num_updates += 1
        return metrics

    # ---- acting ------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        o, single = self._as_obs(obs)
        a = TanhGaussianPolicy.act(self.policy, o, deterministic, self._randn)
        return a[0] if single else a

    @torch.no_grad()
    def policy_q(self, obs: Tensor) -> Tensor:
        o, _ = self._as_obs(obs)
        a = self.policy.deterministic(o).unsqueeze(1)
        return twin_min(self.critics, o, a).squeeze(1)

    # ---- checkpoint ----------------------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy, "critics": self.critics, "target_critics": self.target_critics}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def _tensors(self) -> dict[str, Tensor]:
        return {"log_alpha": self.log_alpha}
