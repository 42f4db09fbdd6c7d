"""One colour and one label per method, used by every figure so methods look the same everywhere."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

#: Colour-blind-safe colours (Okabe-Ito) for the methods of the study.
METHOD_COLORS: dict[str, str] = {
    "calql": "#D55E00",  # vermillion: the proposed method stands out
    "cql": "#0072B2",  # blue
    "iql": "#009E73",  # bluish green
    "sac": "#7F7F7F",  # grey: the from-scratch reference
}
#: Colours for methods added later, picked by a stable hash of the name (same colour every run).
FALLBACK_COLORS = ("#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000", "#8C564B", "#17BECF")
METHOD_LABELS: dict[str, str] = {"calql": "Cal-QL", "cql": "CQL", "iql": "IQL", "sac": "SAC (scratch)"}
#: Preferred plotting/table order; other methods follow alphabetically.
METHOD_ORDER = ("calql", "cql", "iql", "sac")


def method_color(method: str, overrides: Mapping[str, str] | None = None) -> str:
    if overrides and method in overrides:
        return overrides[method]
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return FALLBACK_COLORS[zlib.crc32(method.encode()) % len(FALLBACK_COLORS)]


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def order_methods(methods: Iterable[str]) -> list[str]:
    methods = set(methods)
    known = [m for m in METHOD_ORDER if m in methods]
    return known + sorted(methods - set(known))
