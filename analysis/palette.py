"""One colour, one label and one place in the order per method, used by every figure and table.

Algorithms bring their label and colour from the registry (``calql.agents.registry``); a config's
named variants bring their own (``methods: - name: {algo, label, color}``). The analysis commands
call :func:`use_config` once with the experiment config, so variants are shown as the config says
and methods appear in the config's order; ``analysis.colors`` overrides any colour.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

# calql.agents.registry imports no torch (agent classes are imported when first used).
from calql.agents.registry import ALGORITHMS, config_methods

#: Colours for methods with none of their own (e.g. a variant without `color`), picked by a stable
#: hash of the name (same colour every run).
FALLBACK_COLORS = ("#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000", "#8C564B", "#17BECF")

#: Label and colour of each method of the config given to :func:`use_config`, in config order.
_CONFIG_STYLES: dict[str, tuple[str, str]] = {}


def use_config(config: dict[str, Any] | None) -> None:
    """Take the labels, colours and order of ``config``'s methods (variants included)."""
    _CONFIG_STYLES.clear()
    for name, method in config_methods(config or {}).items():
        _CONFIG_STYLES[name] = (method.label, method.color)


def method_color(method: str, overrides: Mapping[str, str] | None = None) -> str:
    if overrides and method in overrides:
        return overrides[method]
    if _CONFIG_STYLES.get(method, ("", ""))[1]:
        return _CONFIG_STYLES[method][1]
    if method in ALGORITHMS:
        return ALGORITHMS[method].color
    return FALLBACK_COLORS[zlib.crc32(method.encode()) % len(FALLBACK_COLORS)]


def method_label(method: str) -> str:
    if method in _CONFIG_STYLES:
        return _CONFIG_STYLES[method][0]
    if method in ALGORITHMS:
        return ALGORITHMS[method].label
    return method


def order_methods(methods: Iterable[str]) -> list[str]:
    """The config's order, then the registry's, then the rest alphabetically."""
    methods = set(methods)
    preferred = [*_CONFIG_STYLES, *(n for n in ALGORITHMS if n not in _CONFIG_STYLES)]
    known = [m for m in preferred if m in methods]
    return known + sorted(methods - set(known))
