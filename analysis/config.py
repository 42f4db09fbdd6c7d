"""The ``analysis`` section of the experiment config: keys, defaults, validation.

The top-level schema only says ``analysis`` is an object; this module owns its keys so the
analysis can evolve without touching the other stages. Unknown keys and bad values raise
:class:`calql.errors.ConfigError` naming the key, like the rest of the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from calql.errors import ConfigError, suggest

#: Figure file formats matplotlib can write and the workflow may ask for.
FIGURE_FORMATS = ("png", "pdf", "svg")


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of aggregation, statistics and plots (``analysis:`` in the experiment config)."""

    #: Share of the fine-tuning budget (online env steps) whose evaluations count as "early" for
    #: the unlearning dip; the start point (env_steps = 0) is always included.
    early_fraction: float = 0.25
    #: Bootstrap resamples for the IQM / mean confidence intervals (rliable uses 2000 or more).
    n_bootstrap: int = 2000
    #: Confidence level of every interval (bootstrap CIs, curve bands, bar error bars).
    ci: float = 0.95
    #: Random state of the bootstrap, so intervals are reproducible.
    seed: int = 0
    #: Also use phases whose metrics.csv exists but whose run.json is not "complete" (e.g. to
    #: look at runs still training). They stay listed in missing.csv either way.
    include_incomplete: bool = False
    #: File formats of every figure.
    formats: tuple[str, ...] = ("png", "pdf")
    #: Resolution of raster figures.
    dpi: int = 200
    #: Colour overrides {method: matplotlib colour}; other methods keep the default palette.
    colors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> AnalysisConfig:
        """Build from a full experiment config (uses its ``analysis`` section) or None (defaults)."""
        section = (config or {}).get("analysis") or {}
        return cls.from_section(section)

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> AnalysisConfig:
        """Validate the ``analysis`` mapping and build the settings; raise ConfigError on bad keys."""
        if not isinstance(section, dict):
            raise ConfigError(f"config error at 'analysis': must be a mapping, got {type(section).__name__}")
        allowed = [f.name for f in fields(cls)]
        for key in section:
            if key not in allowed:
                raise ConfigError(
                    f"config error at 'analysis': unknown key '{key}' (allowed: {', '.join(allowed)})."
                    + suggest(str(key), allowed)
                )
        values = dict(section)
        if "early_fraction" in values:
            values["early_fraction"] = _number(values["early_fraction"], "early_fraction")
            if not 0.0 < values["early_fraction"] <= 1.0:
                _bad("early_fraction", values["early_fraction"], "a number in (0, 1]")
        if "n_bootstrap" in values:
            values["n_bootstrap"] = _integer(values["n_bootstrap"], "n_bootstrap", minimum=1)
        if "ci" in values:
            values["ci"] = _number(values["ci"], "ci")
            if not 0.0 < values["ci"] < 1.0:
                _bad("ci", values["ci"], "a number in (0, 1), e.g. 0.95")
        if "seed" in values:
            values["seed"] = _integer(values["seed"], "seed", minimum=0)
        if "include_incomplete" in values and not isinstance(values["include_incomplete"], bool):
            _bad("include_incomplete", values["include_incomplete"], "true or false")
        if "formats" in values:
            formats = values["formats"]
            if isinstance(formats, str):
                formats = [formats]
            if not isinstance(formats, list | tuple) or not formats:
                _bad("formats", formats, f"a non-empty list of {', '.join(FIGURE_FORMATS)}")
            for fmt in formats:
                if fmt not in FIGURE_FORMATS:
                    _bad("formats", fmt, f"one of {', '.join(FIGURE_FORMATS)}")
            values["formats"] = tuple(dict.fromkeys(formats))
        if "dpi" in values:
            values["dpi"] = _integer(values["dpi"], "dpi", minimum=50)
        if "colors" in values:
            values["colors"] = _colors(values["colors"])
        return cls(**values)


def _bad(key: str, value: Any, expected: str) -> None:
    raise ConfigError(f"config error at 'analysis/{key}': {value!r} is not {expected}")


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _bad(key, value, "a number")
    return float(value)


def _integer(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _bad(key, value, f"an integer >= {minimum}")
    return int(value)


def _colors(value: Any) -> dict[str, str]:
    from matplotlib.colors import is_color_like

    if not isinstance(value, dict):
        _bad("colors", value, "a mapping {method: colour}")
    for method, color in value.items():
        if not isinstance(color, str) or not is_color_like(color):
            raise ConfigError(
                f"config error at 'analysis/colors/{method}': {color!r} is not a matplotlib colour"
            )
    return {str(k): str(v) for k, v in value.items()}
