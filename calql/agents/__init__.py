"""The algorithms: agents behind one contract (docs/design.md), in one registry (``registry.py``).

``make_agent(algorithm, obs_dim, act_dim, hparams, device)`` builds an agent from a dict of
hyperparameters (unknown keys raise ConfigError); ``config_class(algorithm)`` gives the
algorithm's dataclass (defaults = official code) and ``hparam_names(algorithm)`` its keys. The
built-in algorithms are registered at the end of this module, each with its source. Loss math lives in
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

from calql.agents.awac import AWACAgent
from calql.agents.base import Agent
from calql.agents.calql import CalQLAgent
from calql.agents.configs import AgentConfig, AWACConfig, CalQLConfig, CQLConfig, IQLConfig, RLPDConfig, SACConfig
from calql.agents.cql import CQLAgent
from calql.agents.iql import IQLAgent
from calql.agents.numerics import check_finite
from calql.agents.registry import (
    ALGORITHMS,
    Algorithm,
    Method,
    algorithm_names,
    config_methods,
    get_algorithm,
    get_method,
    register,
    unregister,
)
from calql.agents.rlpd import RLPDAgent
from calql.agents.sac import SACAgent
from calql.errors import CheckpointError

log = logging.getLogger(__name__)


def config_class(method: str) -> type[AgentConfig]:
    """The hyperparameter dataclass of algorithm ``method``."""
    return get_algorithm(method).config


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
    algorithm = get_algorithm(method)
    cfg = algorithm.config.from_dict(hparams)
    agent = algorithm.agent(obs_dim, act_dim, cfg, device)
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


# ----------------------------------------------------------------------------- built-in algorithms
# Colours: Okabe-Ito (colour-blind safe); the proposed method stands out, the from-scratch
# reference is grey.
register(
    Algorithm(
        "calql", CalQLAgent, CalQLConfig, "Cal-QL", "#D55E00", pretrains=True, offline_data_online=True,
        source="Nakamoto et al. 2023; official code nakamotoo/Cal-QL (docs/method.md#cal-ql-bound)",
    )
)  # fmt: skip
register(
    Algorithm(
        "cql", CQLAgent, CQLConfig, "CQL", "#0072B2", pretrains=True, offline_data_online=True,
        source="Kumar et al. 2020; the official Cal-QL code with enable_calql=False (docs/method.md)",
    )
)  # fmt: skip
register(
    Algorithm(
        "iql", IQLAgent, IQLConfig, "IQL", "#009E73", pretrains=True, offline_data_online=True,
        source="Kostrikov et al. 2021; the first author's fork nakamotoo/implicit_q_learning (docs/baselines.md)",
    )
)  # fmt: skip
register(
    Algorithm(
        "sac", SACAgent, SACConfig, "SAC (scratch)", "#7F7F7F", pretrains=False, offline_data_online=False,
        source="Haarnoja et al. 2018; the official Cal-QL code with use_cql=False (docs/method.md)",
    )
)  # fmt: skip
register(
    Algorithm(
        "hybrid", SACAgent, SACConfig, "Hybrid RL", "#E69F00", pretrains=False, offline_data_online=True,
        source="Song et al. 2023 (Hy-Q) as the Cal-QL paper runs it: SAC from scratch on 50/50 offline/online batches",
    )
)  # fmt: skip
register(
    Algorithm(
        "awac", AWACAgent, AWACConfig, "AWAC", "#CC79A7", pretrains=True, offline_data_online=True,
        source="Nair et al. 2020; CORL finetune/awac.py defaults, the first author's nakamotoo/jaxrl (AWAC-F) in the presets",
    )
)  # fmt: skip
register(
    Algorithm(
        "rlpd", RLPDAgent, RLPDConfig, "RLPD", "#56B4E9", pretrains=False, offline_data_online=True,
        source="Ball et al. 2023; ikostrikov/rlpd with the first author's nakamotoo/rlpd settings (RLPD-F)",
    )
)  # fmt: skip

#: Names of the built-in algorithms (the registry may hold more: ``algorithm_names()``).
METHODS: tuple[str, ...] = tuple(ALGORITHMS)

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
