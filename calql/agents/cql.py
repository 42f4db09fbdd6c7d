"""CQL (official ConservativeSAC with use_cql=True; docs/method.md#cql-critic-loss) on top of the SAC backbone.

Each critic is evaluated once per update on [data action, N uniform actions, N samples of
pi(.|s), N samples of pi(.|s')], all at the state s (the next-state samples are valued at s,
as in the original CQL code). Policy samples and log-probs are constants for the critics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

import calql.agents.losses as L
from calql.agents.hyperparameters import CQLConfig
from calql.agents.sac import Metrics, SACAgent


@dataclass(frozen=True)
class CQLActionSets:
    """Where each set of actions lies along the critics' action axis (and in the policy samples).

    Each critic values ``1 + 3N`` actions at the state s: column 0 the data action, then N uniform
    actions, N samples of pi(.|s), N samples of pi(.|s'). The policy samples at s hold the
    actor's sample in column 0, then the N CQL samples; those at s' hold the ``n_backup`` backup
    samples, then the N CQL samples.
    """

    n: int
    """N = ``cql_n_actions``: actions per set."""
    n_backup: int
    """Policy samples at s' used by the Bellman backup (before the CQL ones)."""

    data = 0

    @property
    def uniform(self) -> slice:
        return slice(1, 1 + self.n)

    @property
    def current(self) -> slice:
        """Values of the pi(.|s) samples."""
        return slice(1 + self.n, 1 + 2 * self.n)

    @property
    def next(self) -> slice:
        """Values of the pi(.|s') samples (valued at s)."""
        return slice(1 + 2 * self.n, 1 + 3 * self.n)

    @property
    def policy(self) -> slice:
        """Values of both policy sets: the ones Cal-QL bounds."""
        return slice(1 + self.n, 1 + 3 * self.n)

    @property
    def state_samples(self) -> slice:
        """The CQL samples among the policy samples at s (after the actor's)."""
        return slice(1, 1 + self.n)

    @property
    def next_samples(self) -> slice:
        """The CQL samples among the policy samples at s' (after the backup's)."""
        return slice(self.n_backup, self.n_backup + self.n)


class CQLAgent(SACAgent):
    """SAC + conservative penalty T logsumexp(Q(s, .)) - Q(s, a_data), fixed or Lagrange weight."""

    method = "cql"
    cfg: CQLConfig

    def __init__(self, obs_dim: int, act_dim: int, config: CQLConfig, device: str | torch.device) -> None:
        # log alpha' = 1.0 initially (alpha' = e); trained only with cql_lagrange, by the critics'
        # Adam group at qf_lr (official).
        log_alpha_prime = nn.Parameter(torch.ones((), device=torch.device(device)))
        lagrange_params = [log_alpha_prime] if config.cql_lagrange else []
        super().__init__(obs_dim, act_dim, config, device, other_critic_params=lagrange_params)
        self.log_alpha_prime = log_alpha_prime
        self.action_sets = CQLActionSets(config.cql_n_actions, self.n_backup)

    def _on_mode(self) -> None:
        online = self.mode == "online"
        self._use_cql = (not online) or self.cfg.online_use_cql
        w_online = self.cfg.cql_min_q_weight_online
        self._cql_weight = w_online if (online and w_online >= 0) else self.cfg.cql_min_q_weight

    def _tensors(self) -> dict[str, Tensor]:
        return {**super()._tensors(), "log_alpha_prime": self.log_alpha_prime}

    def _n_state_samples(self) -> int:
        return 1 + self.cfg.cql_n_actions if self._use_cql else 1

    def _n_next_samples(self) -> int:
        return self.n_backup + self.cfg.cql_n_actions if self._use_cql else self.n_backup

    def _n_uniform_actions(self) -> int:
        return self.cfg.cql_n_actions if self._use_cql else 0

    def _critic_actions(
        self, batch: dict[str, Tensor], state_actions: Tensor, next_actions: Tensor, uniform_actions: Tensor | None
    ) -> Tensor:
        if not self._use_cql:
            return super()._critic_actions(batch, state_actions, next_actions, uniform_actions)
        sets = self.action_sets
        assert uniform_actions is not None
        data_actions = batch["actions"].unsqueeze(1)
        return torch.cat(
            [data_actions, uniform_actions, state_actions[:, sets.state_samples], next_actions[:, sets.next_samples]],
            dim=1,
        )

    def _policy_values(self, q_cur: Tensor, q_next: Tensor, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Hook on the policy-action values before the IS correction (Cal-QL bounds them here)."""
        return q_cur, q_next

    def _regularizer(
        self, q_all: list[Tensor], batch: dict[str, Tensor], state_logps: Tensor, next_logps: Tensor
    ) -> tuple[list[Tensor] | None, Tensor | None, Metrics]:
        if not self._use_cql:
            return None, None, {}
        cfg, sets = self.cfg, self.action_sets
        logp_cur, logp_next = state_logps[:, sets.state_samples], next_logps[:, sets.next_samples]
        gaps = []
        for q in q_all:
            q_data, q_rand, q_cur, q_next = q[:, sets.data], q[:, sets.uniform], q[:, sets.current], q[:, sets.next]
            q_cur, q_next = self._policy_values(q_cur, q_next, batch)
            if cfg.cql_importance_sample:
                logsumexp_terms = L.cql_cat_is(q_rand, q_next, q_cur, logp_next, logp_cur, self.act_dim)
            else:
                logsumexp_terms = L.cql_cat_raw(q_rand, q_data, q_next, q_cur)
            gaps.append(L.cql_gap(logsumexp_terms, q_data, cfg.cql_temp, cfg.cql_clip_diff_min, cfg.cql_clip_diff_max))
        metrics: Metrics = {}
        alpha_prime_loss = None
        if cfg.cql_lagrange:
            penalties, alpha_prime_loss, alpha_prime = L.cql_lagrange_losses(
                self.log_alpha_prime, gaps, self._cql_weight, cfg.cql_target_action_gap
            )
            metrics["alpha_prime"] = alpha_prime.detach()
            metrics["alpha_prime_loss"] = alpha_prime_loss.detach()
        else:
            penalties = [self._cql_weight * g for g in gaps]
        metrics.update(
            cql_qf1_diff=gaps[0].detach(),
            cql_qf2_diff=gaps[1].detach(),
            cql_min_qf1_loss=penalties[0].detach(),
            cql_min_qf2_loss=penalties[1].detach(),
        )
        mc_returns = batch.get("mc_returns")
        if mc_returns is not None:  # fraction of policy-action values below G (before any bound), both critics
            policy_q = torch.cat([q[:, sets.policy].detach() for q in q_all], dim=1)
            metrics["bound_rate"] = L.bound_rate(policy_q, mc_returns)
        return penalties, alpha_prime_loss, metrics
