"""The algorithms: agents behind one contract (docs/design.md), in one registry (``registry.py``).

``make_agent(algorithm, obs_dim, act_dim, hparams, device)`` builds an agent from a dict of
hyperparameters (unknown keys raise ConfigError); ``config_class(algorithm)`` gives the
algorithm's dataclass (defaults = official code) and ``hparam_names(algorithm)`` its keys. The
built-in algorithms are registered at the end of ``registry.py``, each with its source. Loss math lives in
``calql.agents.losses``; call ``torch.manual_seed(seed)`` before ``make_agent`` for
reproducibility (the agent seeds its own generator from the global RNG and checkpoints it).

Beyond the design contract every agent has ``q_value(obs, actions) -> [B]`` (min over critics,
e.g. for ``q_data``); ``agent_from_state_dict`` rebuilds an agent from a checkpoint alone;
``check_finite(metrics, step)`` is the divergence guard (one host sync per call).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from calql.agents.hyperparameters import (
    AgentConfig,
    AWACConfig,
    CalQLConfig,
    CQLConfig,
    IQLConfig,
    RLPDConfig,
    SACConfig,
)
from calql.agents.registry import (
    ALGORITHMS,
    METHODS,
    Algorithm,
    Method,
    algorithm_names,
    config_methods,
    get_algorithm,
    get_method,
    register,
    unregister,
)
from calql.errors import CheckpointError

if TYPE_CHECKING:
    import torch

    from calql.agents.awac import AWACAgent
    from calql.agents.base import Agent
    from calql.agents.calql import CalQLAgent
    from calql.agents.cql import CQLAgent
    from calql.agents.iql import IQLAgent
    from calql.agents.numerics import check_finite
    from calql.agents.rlpd import RLPDAgent
    from calql.agents.sac import SACAgent

#: Names this package gives from modules that import torch: imported on first use (PEP 562), so
#: that the registry (labels, colours, methods of a config) can be read without torch.
_LAZY = {
    "Agent": "calql.agents.base",
    "AWACAgent": "calql.agents.awac",
    "CalQLAgent": "calql.agents.calql",
    "CQLAgent": "calql.agents.cql",
    "IQLAgent": "calql.agents.iql",
    "RLPDAgent": "calql.agents.rlpd",
    "SACAgent": "calql.agents.sac",
    "check_finite": "calql.agents.numerics",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


log = logging.getLogger(__name__)


def config_class(algorithm: str) -> type[AgentConfig]:
    """The hyperparameter dataclass of ``algorithm`` (a registered algorithm, not a variant)."""
    return get_algorithm(algorithm).config


def hparam_names(algorithm: str) -> list[str]:
    """Names of the hyperparameters ``algorithm`` accepts."""
    return config_class(algorithm).names()


def default_hparams(algorithm: str) -> dict[str, Any]:
    """The algorithm's defaults (the official code's) as a plain dict."""
    return config_class(algorithm)().to_dict()


def make_agent(
    algorithm: str, obs_dim: int, act_dim: int, hparams: dict[str, Any] | None, device: str | torch.device = "cpu"
) -> Agent:
    """Build the agent of ``algorithm`` from ``hparams`` (missing keys take the defaults).
    A config's variant resolves to its algorithm first (``calql.training.resolve.run_algorithm``)."""
    entry = get_algorithm(algorithm)
    cfg = entry.config.from_dict(hparams)
    agent = entry.agent(obs_dim, act_dim, cfg, device)
    log.info(
        "built %s agent: obs %d, act %d, device %s, hyperparameters %s",
        algorithm,
        obs_dim,
        act_dim,
        agent.device,
        cfg.to_dict(),
    )
    return agent


def agent_from_state_dict(state: dict[str, Any], device: str | torch.device = "cpu") -> Agent:
    """Rebuild an agent (its algorithm, sizes, hyperparameters) from its ``state_dict`` and load it."""
    try:
        algorithm, obs_dim, act_dim, hparams = state["method"], state["obs_dim"], state["act_dim"], state["config"]
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"not an agent checkpoint (missing {exc})") from exc
    agent = make_agent(algorithm, obs_dim, act_dim, hparams, device)
    agent.load_state_dict(state)
    return agent


__all__ = [
    "agent_from_state_dict",
    "ALGORITHMS",
    "Algorithm",
    "METHODS",
    "Method",
    "algorithm_names",
    "config_methods",
    "get_algorithm",
    "get_method",
    "register",
    "unregister",
    "Agent",
    "AgentConfig",
    "AWACAgent",
    "AWACConfig",
    "CQLAgent",
    "CQLConfig",
    "CalQLAgent",
    "CalQLConfig",
    "IQLAgent",
    "IQLConfig",
    "RLPDAgent",
    "RLPDConfig",
    "SACAgent",
    "SACConfig",
    "check_finite",
    "config_class",
    "default_hparams",
    "hparam_names",
    "make_agent",
]
