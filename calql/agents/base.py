"""Agent plumbing shared by all methods: device, RNG, phase, checkpoint state, Adam construction.

Each agent owns a ``torch.Generator`` (seeded from the global torch RNG at construction, so
``torch.manual_seed(seed)`` before ``make_agent`` fixes everything) and draws all of its noise
from it; its state is part of ``state_dict`` so a resumed run continues the same random stream.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import Tensor, nn

from calql.agents.hyperparameters import AgentConfig
from calql.agents.networks import twin_min
from calql.errors import CheckpointError, describe

#: What an agent is doing: learning from the dataset alone (pre-training) or from its own online
#: data too (fine-tuning); some losses differ (e.g. Cal-QL's bound online). Not the run's phases
#: (``calql.run_files.PHASES``, the folders ``pretrain``/``finetune``), though each phase sets one.
AGENT_MODES = ("offline", "online")


def make_adam(groups: list[dict[str, Any]], device: torch.device) -> torch.optim.Adam:
    """Adam (optax defaults: betas 0.9/0.999, eps 1e-8) with the fused kernel on CPU/CUDA:
    one multi-tensor kernel per step instead of a Python loop over parameters."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(groups, fused=fused, foreach=None if fused else True)


class Agent(abc.ABC):
    """The contract of docs/design.md (update / act / policy_q / set_mode / state_dict)."""

    #: The registered algorithm whose agent class this is (its checkpoints record it as "method";
    #: Hybrid RL runs the SAC agent, so its agents say "sac").
    method: str = ""

    def __init__(self, obs_dim: int, act_dim: int, config: AgentConfig, device: str | torch.device) -> None:
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.cfg = config
        self.device = torch.device(device)
        self.mode = "offline"
        self.num_updates = 0
        seed = int(torch.randint(0, 2**62, (1,)).item())
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    # ---- contract -------------------------------------------------------------------------
    @abc.abstractmethod
    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One gradient step on ``batch`` (tensors already on ``self.device``); detached scalars."""

    @abc.abstractmethod
    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        """Actions in [-1, 1] for ``obs`` ([B, O] or [O])."""

    @abc.abstractmethod
    def policy_q(self, obs: Tensor) -> Tensor:
        """min_i Q_i(s, deterministic policy action), [B] (calibration diagnostic)."""

    @torch.no_grad()
    def q_value(self, obs: Tensor, actions: Tensor) -> Tensor:
        """min_i Q_i(s, a) for given actions, [B] (e.g. Q of the dataset actions: `q_data`)."""
        o, _ = self._as_obs(obs)
        a = torch.as_tensor(actions, dtype=torch.float32, device=self.device).reshape(o.shape[0], 1, -1)
        return twin_min(self.critics, o, a).squeeze(1)  # type: ignore[attr-defined]

    def set_mode(self, mode: str) -> None:
        """Switch between 'offline' pre-training and 'online' fine-tuning behaviour."""
        if mode not in AGENT_MODES:
            raise ValueError(f"mode must be one of {AGENT_MODES} (an agent's mode, not a run phase), got {mode!r}")
        self.mode = mode
        self._on_mode()

    @abc.abstractmethod
    def _modules(self) -> dict[str, nn.Module]:
        """Networks (incl. targets) to checkpoint."""

    @abc.abstractmethod
    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers to checkpoint."""

    def _tensors(self) -> dict[str, Tensor]:
        """Free parameters (log alphas) to checkpoint."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically: nets, targets, optimizers, alphas, RNG."""
        return {
            "method": self.method,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "config": self.cfg.to_dict(),
            "mode": self.mode,
            "num_updates": self.num_updates,
            "modules": {k: m.state_dict() for k, m in self._modules().items()},
            "tensors": {k: t.detach().clone() for k, t in self._tensors().items()},
            "optimizers": {k: o.state_dict() for k, o in self._optimizers().items()},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``; raise CheckpointError if it belongs to another method or size."""
        for key, mine in (("method", self.method), ("obs_dim", self.obs_dim), ("act_dim", self.act_dim)):
            if state.get(key) != mine:
                raise CheckpointError(f"checkpoint has {key}={state.get(key)!r}, this agent has {mine!r}")
        try:
            for k, m in self._modules().items():
                m.load_state_dict(state["modules"][k])
            with torch.no_grad():
                for k, t in self._tensors().items():
                    t.copy_(state["tensors"][k])
            for k, o in self._optimizers().items():
                o.load_state_dict(state["optimizers"][k])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint does not match this {self.method} agent: {describe(exc)}") from exc
        self.generator.set_state(state["generator"])
        self.mode = state["mode"] if "mode" in state else state["phase"]  # "phase": checkpoints before the rename
        self.num_updates = int(state["num_updates"])
        self._on_mode()

    def _on_mode(self) -> None:
        """Hook: recompute mode-dependent switches after set_mode / load_state_dict."""

    # ---- helpers --------------------------------------------------------------------------
    def _as_obs(self, obs: Tensor) -> tuple[Tensor, bool]:
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        single = obs.dim() == 1
        return (obs.unsqueeze(0) if single else obs), single

    def _randn(self, *shape: int) -> Tensor:
        return torch.randn(*shape, generator=self.generator, device=self.device)
