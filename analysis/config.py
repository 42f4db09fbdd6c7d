"""The ``analysis`` section of the experiment config as typed settings.

Its keys, defaults and checks are defined once, in the config schema
(``calql/schemas/config.schema.yaml``, section ``analysis``); this module validates the section
with it and adds only what a schema cannot express (that each colour is a matplotlib colour).
Unknown keys and bad values raise :class:`calql.errors.ConfigError` naming the key, like the rest
of the config.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from calql.config import validate_section
from calql.errors import ConfigError


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of aggregation, statistics and plots (``analysis:`` in the experiment config)."""

    # No defaults here: the schema's are the only ones (from_section fills them in).
    #: Share of the fine-tuning budget (online env steps) whose evaluations count as "early" for
    #: the unlearning dip; the start point (env_steps = 0) is always included.
    early_fraction: float
    #: Bootstrap resamples for the IQM / mean confidence intervals (rliable uses 2000 or more).
    n_bootstrap: int
    #: Confidence level of every interval (bootstrap CIs, curve bands, bar error bars).
    ci: float
    #: Random state of the bootstrap, so intervals are reproducible.
    seed: int
    #: Also use phases whose metrics.csv exists but whose run.json is not "complete" (e.g. to
    #: look at runs still training). They stay listed in missing.csv either way.
    include_incomplete: bool
    #: File formats of every figure.
    formats: tuple[str, ...]
    #: Resolution of raster figures.
    dpi: int
    #: Colour overrides {method: matplotlib colour}; other methods keep the default palette.
    colors: dict[str, str]

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> AnalysisConfig:
        """Build from a full experiment config (uses its ``analysis`` section) or None (defaults)."""
        section = (config or {}).get("analysis") or {}
        return cls.from_section(section)

    @classmethod
    def from_section(cls, section: Any) -> AnalysisConfig:
        """Validate the ``analysis`` mapping against the schema and build the settings."""
        values = validate_section("analysis", copy.deepcopy(section))
        _check_colors(values["colors"])
        return cls(
            **{
                **values,
                "early_fraction": float(values["early_fraction"]),
                "ci": float(values["ci"]),
                "formats": tuple(values["formats"]),
                "colors": dict(values["colors"]),
            }
        )


def _check_colors(colors: dict[str, str]) -> None:
    from matplotlib.colors import is_color_like

    for method, color in colors.items():
        if not is_color_like(color):
            raise ConfigError(f"config error at 'analysis/colors/{method}': {color!r} is not a matplotlib colour")
