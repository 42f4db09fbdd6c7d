"""The methods: Cal-QL, CQL, IQL and SAC agents behind one contract (docs/design.md).

``make_agent(method, obs_dim, act_dim, hparams, device)`` builds an agent from a dict of
hyperparameters (unknown keys raise ConfigError); ``config_class(method)`` gives the method's
dataclass (defaults = official code) and ``hparam_names(method)`` its keys. Loss math lives in
``calql.agents.losses``; call ``torch.manual_seed(seed)`` before ``make_agent`` for
reproducibility (the agent seeds its own generator from the global RNG and checkpoints it).

Beyond the design contract every agent has ``q_value(obs, actions) -> [B]`` (min over critics,
e.g. for ``q_data``); ``agent_from_state_dict`` rebuilds an agent from a checkpoint alone;
``check_finite(metrics, step)`` is the divergence guard (one host sync per call).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from calql.agents.base import Agent
from calql.agents.calql import CalQLAgent
from calql.agents.configs import AgentConfig, CalQLConfig, CQLConfig, IQLConfig, SACConfig
from calql.agents.cql import CQLAgent
from calql.agents.iql import IQLAgent
from calql.agents.numerics import check_finite
from calql.agents.sac import SACAgent
from calql.errors import CheckpointError, ConfigError, suggest

AGENTS: dict[str, type[Agent]] = {"sac": SACAgent, "cql": CQLAgent, "calql": CalQLAgent, "iql": IQLAgent}
CONFIGS: dict[str, type[AgentConfig]] = {"sac": SACConfig, "cql": CQLConfig, "calql": CalQLConfig, "iql": IQLConfig}
METHODS: tuple[str, ...] = tuple(AGENTS)

log = logging.getLogger(__name__)


def _check_method(method: str) -> None:
    if method not in AGENTS:
        raise ConfigError(f"unknown method '{method}' (choose from: {', '.join(METHODS)}).{suggest(method, METHODS)}")


def config_class(method: str) -> type[AgentConfig]:
    """The hyperparameter dataclass of ``method``."""
    _check_method(method)
    return CONFIGS[method]


def hparam_names(method: str) -> list[str]:
    """Names of the hyperparameters ``method`` accepts."""
    return config_class(method).names()


def default_hparams(method: str) -> dict[str, Any]:
    """The method's defaults (the official code's) as a plain dict."""
    return config_class(method)().to_dict()


def make_agent(
    method: str, obs_dim: int, act_dim: int, hparams: dict[str, Any] | None, device: str | torch.device = "cpu"
) -> Agent:
    """Build the agent of ``method`` from ``hparams`` (missing keys take the defaults)."""
    cfg = config_class(method).from_dict(hparams)
    agent = AGENTS[method](obs_dim, act_dim, cfg, device)  # type: ignore[arg-type]
    log.info(
        "built %s agent: obs %d, act %d, device %s, hyperparameters %s",
        method,
        obs_dim,
        act_dim,
        agent.device,
        cfg.to_dict(),
    )
    return agent


def agent_from_state_dict(state: dict[str, Any], device: str | torch.device = "cpu") -> Agent:
    """Rebuild an agent (method, sizes, hyperparameters) from its ``state_dict`` and load it."""
    try:
        method, obs_dim, act_dim, hparams = state["method"], state["obs_dim"], state["act_dim"], state["config"]
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"not an agent checkpoint (missing {exc})") from exc
    agent = make_agent(method, obs_dim, act_dim, hparams, device)
    agent.load_state_dict(state)
    return agent


__all__ = [
    "agent_from_state_dict",
    "AGENTS",
    "CONFIGS",
    "METHODS",
    "Agent",
    "AgentConfig",
    "CQLAgent",
    "CQLConfig",
    "CalQLAgent",
    "CalQLConfig",
    "IQLAgent",
    "IQLConfig",
    "SACAgent",
    "SACConfig",
    "check_finite",
    "config_class",
    "default_hparams",
    "hparam_names",
    "make_agent",
]
