"""The metadata every source's ``fetch`` attaches to its dataset (stored by ``calql.data.format``).

One builder for all sources, so that each key means the same everywhere: ``source`` (the task's
source block plus what the fetch found: file, checksum, size, ...), ``env_id`` and ``env_kwargs``,
``obs_layout``, ``ref_min_score``/``ref_max_score`` (where the source has them; the task's
``score`` block wins), the source's own keys, and ``provenance``
(``calql.provenance.provenance()``: git commit, package versions).
"""

from __future__ import annotations

from typing import Any

from calql.config import TaskSpec
from calql.envs.layout import Layout
from calql.provenance import provenance


def score_refs(task: TaskSpec, ref_min: float | None, ref_max: float | None) -> dict[str, float | None]:
    """Reference scores: the task's ``score`` block wins over the source's values."""
    return {
        "ref_min_score": task.ref_min if task.ref_min is not None else ref_min,
        "ref_max_score": task.ref_max if task.ref_max is not None else ref_max,
    }


def source_meta(
    task: TaskSpec,
    source: dict[str, Any],
    obs_layout: Layout,
    /,
    *,
    env: tuple[str, dict[str, Any]] | None = None,
    refs: tuple[float | None, float | None] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A fetched dataset's metadata (module docstring). ``env``: the ``(env_id, env_kwargs)`` the
    data were recorded in, when the source knows better than the task (default: the task's);
    ``refs``: the source's ``(ref_min_score, ref_max_score)``, None for a source without them
    (no keys then, whatever the task says); ``extra``: the source's own keys (any name: the first three
    arguments are positional-only, so e.g. ``task=`` is a key)."""
    env_id, env_kwargs = env if env is not None else (task.env_id, dict(task.env_kwargs))
    return {
        "source": source,
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "obs_layout": obs_layout,
        **(score_refs(task, *refs) if refs is not None else {}),
        **extra,
        "provenance": provenance(),
    }
