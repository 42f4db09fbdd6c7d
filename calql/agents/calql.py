"""Cal-QL = CQL + one change (docs/method.md#cal-ql-bound): the policy-action values Q(s, a_cur) and
Q(s, a_next) in the CQL logsumexp are lower-bounded by the transition's Monte-Carlo return,
max(Q, G), before the importance-sampling log-prob is subtracted. Random actions, the data
term, the Bellman target and the actor are untouched.
"""

from __future__ import annotations

from torch import Tensor

import calql.agents.losses as L
from calql.agents.cql import CQLAgent
from calql.agents.hyperparameters import CalQLConfig


class CalQLAgent(CQLAgent):
    """CQL whose policy-action values are calibrated by the MC return ``batch['mc_returns']``."""

    method = "calql"
    cfg: CalQLConfig

    def _on_mode(self) -> None:
        super()._on_mode()
        # Official: calibration stays on online; calibrate_online=False is CORL's variant.
        self._calibrate = self.mode == "offline" or self.cfg.calibrate_online

    def _policy_values(self, q_cur: Tensor, q_next: Tensor, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        if not self._calibrate:
            return q_cur, q_next
        if "mc_returns" not in batch:
            raise KeyError("Cal-QL needs batch['mc_returns'] (the MC return of each transition)")
        mc_returns = batch["mc_returns"]  # G
        return L.calql_lower_bound(q_cur, mc_returns), L.calql_lower_bound(q_next, mc_returns)
