"""SAC backbone of the official ConservativeSAC (spec §3); method `sac` (SAC from scratch).

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

from calql.agents import losses as L
from calql.agents.base import Agent, make_adam
from calql.agents.configs import SACConfig
from calql.agents.networks import Critic, soft_update
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
        extra_critic_params: list[nn.Parameter] | None = None,
    ) -> None:
        """``extra_critic_params``: further parameters trained by the critics' Adam group at
        ``qf_lr`` (CQL's Lagrange log alpha')."""
        super().__init__(obs_dim, act_dim, config, device)
        c = config
        self.policy = TanhGaussianPolicy(
            obs_dim, act_dim, c.policy_hidden, c.orthogonal_init, c.policy_log_std_multiplier, c.policy_log_std_offset
        ).to(self.device)
        self.critics = nn.ModuleList(Critic(obs_dim, act_dim, c.critic_hidden, c.orthogonal_init) for _ in range(2)).to(
            self.device
        )
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.zeros((), device=self.device))
        self.target_entropy = -float(act_dim) if c.target_entropy is None else float(c.target_entropy)
        self.n_backup = c.n_backup_actions()
        policy_group = list(self.policy.parameters())
        if c.use_automatic_entropy_tuning:
            policy_group.append(self.log_alpha)  # official: log alpha's Adam uses policy_lr
        critic_group = list(self.critics.parameters()) + list(extra_critic_params or [])
        self.optimizer = make_adam(
            [{"params": policy_group, "lr": c.policy_lr}, {"params": critic_group, "lr": c.qf_lr}], self.device
        )
        self._online = list(self.critics.parameters())
        self._target = list(self.target_critics.parameters())
        self._loss_fn: Callable[..., tuple[Tensor, Metrics]] = self._losses
        if c.compile:
            self._loss_fn = torch.compile(self._losses)
        self._on_phase()

    # ---- hooks for CQL -------------------------------------------------------------------
    def _n_state_samples(self) -> int:
        """Policy samples per state s: 1 for the actor (CQL adds N)."""
        return 1

    def _n_next_samples(self) -> int:
        """Policy samples per next state s': the backup's (CQL adds N)."""
        return self.n_backup

    def _critic_actions(self, batch: dict[str, Tensor], s_act: Tensor, n_act: Tensor, rand: Tensor | None) -> Tensor:
        """Actions evaluated by each critic at s, [B, K, A]; column 0 is the data action."""
        return batch["actions"].unsqueeze(1)

    def _regularizer(
        self, q_all: list[Tensor], batch: dict[str, Tensor], s_logp: Tensor, n_logp: Tensor
    ) -> tuple[list[Tensor] | None, Tensor | None, Metrics]:
        """Per-critic extra loss terms, an extra loss on other parameters, metrics (SAC: none)."""
        return None, None, {}

    def _n_uniform_actions(self) -> int:
        """Uniform random actions per state s (CQL's set; SAC: none)."""
        return 0

    # ---- update ----------------------------------------------------------------------------
    def _draw_noise(self, batch_size: int) -> tuple[Tensor, Tensor | None]:
        """All randomness of one update, drawn from the agent's generator in two calls."""
        k = max(self._n_state_samples(), self._n_next_samples())
        eps = self._randn(2 * batch_size, k, self.act_dim)
        rand = None
        n_uniform = self._n_uniform_actions()
        if n_uniform:
            rand = torch.rand(batch_size, n_uniform, self.act_dim, generator=self.generator, device=self.device)
            rand = rand * 2.0 - 1.0
        return eps, rand

    def _alpha(self, log_pi: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.cfg.use_automatic_entropy_tuning:
            loss = L.sac_alpha_loss(self.log_alpha, log_pi.detach(), self.target_entropy)
            return self.log_alpha.exp().detach() * self.cfg.alpha_multiplier, loss
        return torch.full((), self.cfg.alpha_multiplier, device=self.device), None

    def _bellman_target(self, batch: dict[str, Tensor], n_act: Tensor, n_logp: Tensor, alpha: Tensor) -> Tensor:
        """r + gamma (1 - d) [max_k] min_j Qbar_j(s', a'_k) [- alpha log pi], no gradient."""
        nxt = batch["next_observations"]
        a, lp = n_act[:, : self.n_backup], n_logp[:, : self.n_backup]
        tq = torch.minimum(self.target_critics[0](nxt, a), self.target_critics[1](nxt, a))
        if self.cfg.max_target_backup:
            value, lp1 = L.max_target_backup(tq, lp)
        else:
            value, lp1 = tq[:, 0], lp[:, 0]
        return L.td_target(
            batch["rewards"],
            batch["dones"],
            value,
            self.cfg.gamma,
            lp1 if self.cfg.backup_entropy else None,
            alpha,
        )

    def _losses(self, batch: dict[str, Tensor], eps: Tensor, rand: Tensor | None) -> tuple[Tensor, Metrics]:
        """Total loss (sum of disjoint-gradient losses) and metrics; see the module docstring."""
        obs, nxt = batch["observations"], batch["next_observations"]
        b = obs.shape[0]
        mean, log_std = self.policy(torch.cat([obs, nxt], dim=0))
        with torch.no_grad():  # every sample but the actor's is a constant: no autograd over them
            acts, logps = TanhGaussianPolicy.sample(mean, log_std, eps)
        s_act, n_act, s_logp, n_logp = acts[:b], acts[b:], logps[:b], logps[b:]

        # Entropy temperature and actor (critics as constants); the actor's sample is eps[:b, 0].
        a_pi, logp_pi = TanhGaussianPolicy.sample(mean[:b], log_std[:b], eps[:b, :1])
        logp_pi = logp_pi[:, 0]
        alpha, alpha_loss = self._alpha(logp_pi)
        q_pi = torch.minimum(
            self.critics[0](obs, a_pi, detach_params=True), self.critics[1](obs, a_pi, detach_params=True)
        ).squeeze(1)
        policy_loss = L.sac_actor_loss(logp_pi, q_pi, alpha)

        with torch.no_grad():
            target = self._bellman_target(batch, n_act, n_logp, alpha)

        # Critics: one forward each over every action evaluated at s.
        c_act = self._critic_actions(batch, s_act, n_act, rand)
        q_all = [critic(obs, c_act) for critic in self.critics]
        bellman = [L.mse(q[:, 0], target) for q in q_all]
        extra, extra_loss, metrics = self._regularizer(q_all, batch, s_logp, n_logp)
        qf_losses = bellman if extra is None else [bl + ex for bl, ex in zip(bellman, extra)]

        total = policy_loss + qf_losses[0] + qf_losses[1]
        if alpha_loss is not None:
            total = total + alpha_loss
            metrics["alpha_loss"] = alpha_loss.detach()
        if extra_loss is not None:
            total = total + extra_loss
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
        if extra is not None:
            metrics["qf1_bellman_loss"] = bellman[0].detach()
            metrics["qf2_bellman_loss"] = bellman[1].detach()
        return total, metrics

    def update(self, batch: dict[str, Tensor]) -> Metrics:
        eps, rand = self._draw_noise(batch["observations"].shape[0])
        total, metrics = self._loss_fn(batch, eps, rand)
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
        return torch.minimum(self.critics[0](o, a), self.critics[1](o, a)).squeeze(1)

    # ---- checkpoint ----------------------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy, "critics": self.critics, "target_critics": self.target_critics}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def _tensors(self) -> dict[str, Tensor]:
        return {"log_alpha": self.log_alpha}
