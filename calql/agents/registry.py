"""The algorithm registry and the methods of an experiment.

An **algorithm** is code: an agent class, its hyperparameter dataclass, and how it is trained
(whether it pre-trains offline, whether it samples the offline data during fine-tuning), with its
display label and colour. A **method** is what a config runs and what names a run folder: either a
registered algorithm by its name, or a named *variant* of one with hyperparameter overrides::

    methods:
      - calql
      - cql
      - calql-corl: {algo: calql, overrides: {calibrate_online: false}, label: "Cal-QL (no online bound)"}

Everything downstream (CLI choices, the workflow's job list, the MLflow import, the analysis'
labels, colours and order) reads these two tables, so a new algorithm is one :func:`register`
call (or an entry point in the ``calql.algorithms`` group of an installed package, see
:func:`load_plugins`) and a preset; no workflow or analysis code names an algorithm.

This module imports no torch: the built-in algorithms (registered at its end) name their agent
classes by import path, imported when first used (:attr:`Algorithm.agent`), so labels, colours and
methods can be read without torch (``analysis.palette``).
"""

from __future__ import annotations

import copy
import importlib
import logging
from dataclasses import dataclass, field
from importlib import metadata
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
from calql.errors import ConfigError, suggest

if TYPE_CHECKING:
    from calql.agents.base import Agent

log = logging.getLogger(__name__)

#: Entry-point group through which an installed package registers its algorithms: each entry
#: point names a callable that calls :func:`register` (or an :class:`Algorithm` to register).
PLUGIN_GROUP = "calql.algorithms"


class _AgentClass:
    """The :attr:`Algorithm.agent` field: given the agent class or its import path
    ``"module:Class"``, it always reads as the class (a path is imported on first read and kept)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, obj: Any, owner: type | None = None) -> type[Agent]:
        if obj is None:  # read on the class: no default, the field is required
            raise AttributeError(self.slot[1:])
        value = obj.__dict__[self.slot]
        if isinstance(value, str):
            module, _, name = value.partition(":")
            value = getattr(importlib.import_module(module), name)
            obj.__dict__[self.slot] = value
        return value

    def __set__(self, obj: Any, value: type[Agent] | str) -> None:
        obj.__dict__[self.slot] = value


@dataclass(frozen=True)
class Algorithm:
    """One algorithm: its code, how it is trained and how it is shown."""

    name: str
    """Registry key; also the method name when a config lists it directly."""
    agent: type[Agent] = _AgentClass()  # type: ignore[assignment]
    """Agent class, built as ``agent(obs_dim, act_dim, config, device)``; may be given as its
    import path ``"module:Class"`` (imported on first use)."""
    config: type[AgentConfig]
    """Hyperparameter dataclass (defaults = the reference code's)."""
    label: str
    """Name in figures and tables."""
    color: str
    """Matplotlib colour in figures."""
    pretrains: bool
    """Has an offline pre-training phase (else it only fine-tunes, from a fresh agent)."""
    offline_data_online: bool
    """Samples the offline data during fine-tuning (``finetune.mixing_ratio``); if False the
    ratio is forced to 0 (e.g. SAC from scratch)."""
    source: str = ""
    """Where the loss and defaults come from (README method table)."""


ALGORITHMS: dict[str, Algorithm] = {}
_plugins_loaded = False


def register(algorithm: Algorithm, replace: bool = False) -> Algorithm:
    """Add ``algorithm`` to the registry (``replace=True`` to redefine a name)."""
    if algorithm.name in ALGORITHMS and not replace:
        raise ValueError(f"algorithm '{algorithm.name}' is already registered")
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm


def unregister(name: str) -> None:
    """Remove an algorithm (tests that register a toy one clean up with this)."""
    ALGORITHMS.pop(name, None)


def load_plugins() -> None:
    """Import the algorithms that installed packages declare in the ``calql.algorithms`` group
    (once per process)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in metadata.entry_points(group=PLUGIN_GROUP):
        target = entry.load()
        if isinstance(target, Algorithm):
            register(target, replace=True)
        else:
            target()
        log.debug("loaded algorithm plugin %s", entry.name)


def algorithm_names() -> tuple[str, ...]:
    load_plugins()
    return tuple(ALGORITHMS)


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm ``name``; ConfigError listing the valid names otherwise."""
    names = algorithm_names()
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{name}' (registered: {', '.join(names)}).{suggest(name, names)}")
    return ALGORITHMS[name]


# ----------------------------------------------------------------------------- methods of a config


@dataclass(frozen=True)
class Method:
    """One entry of a config's ``methods``: an algorithm, plus overrides for a variant."""

    name: str
    """Run-folder and DAG-wildcard name."""
    algorithm: Algorithm
    overrides: dict[str, Any] = field(default_factory=dict)
    """Hyperparameters (and optionally ``reward``) on top of the algorithm's preset."""
    label: str = ""
    color: str = ""

    @property
    def is_variant(self) -> bool:
        return self.name != self.algorithm.name

    @property
    def pretrains(self) -> bool:
        return self.algorithm.pretrains


_VARIANT_KEYS = ("algo", "overrides", "label", "color")


def _method_from_entry(entry: Any, index: int) -> Method:
    if isinstance(entry, str):
        algorithm = get_algorithm(entry)
        return Method(entry, algorithm, {}, algorithm.label, algorithm.color)
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ConfigError(
            f"methods[{index}] must be an algorithm name or one `name: {{algo: ..., overrides: ...}}` "
            f"mapping, got {entry!r}"
        )
    ((name, spec),) = entry.items()
    where = f"methods[{index}] ('{name}')"
    if not isinstance(spec, dict) or "algo" not in spec:
        raise ConfigError(f"{where} must give `algo:` (one of {', '.join(algorithm_names())}), got {spec!r}")
    unknown = [k for k in spec if k not in _VARIANT_KEYS]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(_VARIANT_KEYS)}).{suggest(unknown[0], _VARIANT_KEYS)}"
        )
    if name in ALGORITHMS:
        raise ConfigError(f"{where}: a variant may not take the name of the algorithm '{name}'; pick another name")
    try:
        algorithm = get_algorithm(spec["algo"])
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    overrides = spec.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}.overrides must be a mapping of hyperparameters, got {overrides!r}")
    label = spec.get("label") or f"{algorithm.label} ({name})"
    return Method(str(name), algorithm, copy.deepcopy(overrides), str(label), str(spec.get("color") or ""))


def config_methods(config: dict[str, Any]) -> dict[str, Method]:
    """The config's ``methods`` by name, in config order; bad entries raise ConfigError."""
    out: dict[str, Method] = {}
    for index, entry in enumerate(config.get("methods") or []):
        method = _method_from_entry(entry, index)
        if method.name in out:
            raise ConfigError(f"methods[{index}]: '{method.name}' is listed twice")
        out[method.name] = method
    return out


def get_method(config: dict[str, Any], name: str) -> Method:
    """The method ``name`` of ``config`` (a listed method, or else any registered algorithm)."""
    methods = config_methods(config)
    if name in methods:
        return methods[name]
    names = algorithm_names()
    if name in names:
        return _method_from_entry(name, -1)
    known = [*methods, *(n for n in names if n not in methods)]
    raise ConfigError(f"unknown method '{name}' (config and registry have: {', '.join(known)}).{suggest(name, known)}")


# ----------------------------------------------------------------------------- built-in algorithms
# Colours: Okabe-Ito (colour-blind safe); the proposed method stands out, the from-scratch
# reference is grey. Agent classes by import path: imported when an agent is first built.
_SAC_AGENT = "calql.agents.sac:SACAgent"
# fmt: off
for _algorithm in (
    Algorithm("calql", "calql.agents.calql:CalQLAgent", CalQLConfig, "Cal-QL", "#D55E00",
              pretrains=True, offline_data_online=True,
              source="Nakamoto et al. 2023; official code nakamotoo/Cal-QL (docs/method.md#cal-ql-bound)"),
    Algorithm("cql", "calql.agents.cql:CQLAgent", CQLConfig, "CQL", "#0072B2",
              pretrains=True, offline_data_online=True,
              source="Kumar et al. 2020; the official Cal-QL code with enable_calql=False (docs/method.md)"),
    Algorithm("iql", "calql.agents.iql:IQLAgent", IQLConfig, "IQL", "#009E73",
              pretrains=True, offline_data_online=True,
              source="Kostrikov et al. 2021; the first author's fork nakamotoo/implicit_q_learning (docs/baselines.md)"),
    Algorithm("sac", _SAC_AGENT, SACConfig, "SAC (scratch)", "#7F7F7F",
              pretrains=False, offline_data_online=False,
              source="Haarnoja et al. 2018; the official Cal-QL code with use_cql=False (docs/method.md)"),
    Algorithm("hybrid", _SAC_AGENT, SACConfig, "Hybrid RL", "#E69F00",
              pretrains=False, offline_data_online=True,
              source="Song et al. 2023 (Hy-Q) as the Cal-QL paper runs it: SAC from scratch on 50/50 "
              "offline/online batches"),
    Algorithm("awac", "calql.agents.awac:AWACAgent", AWACConfig, "AWAC", "#CC79A7",
              pretrains=True, offline_data_online=True,
              source="Nair et al. 2020; CORL finetune/awac.py defaults, the first author's nakamotoo/jaxrl "
              "(AWAC-F) in the presets"),
    Algorithm("rlpd", "calql.agents.rlpd:RLPDAgent", RLPDConfig, "RLPD", "#56B4E9",
              pretrains=False, offline_data_online=True,
              source="Ball et al. 2023; ikostrikov/rlpd with the first author's nakamotoo/rlpd settings (RLPD-F)"),
):
    register(_algorithm)
# fmt: on

#: Names of the built-in algorithms (the registry may hold more: ``algorithm_names()``).
METHODS: tuple[str, ...] = tuple(ALGORITHMS)
