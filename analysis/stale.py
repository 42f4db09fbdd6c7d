"""Which finished run phases were made with the config the analysis is given (issue 20.1).

A phase that did not rerun after a config change (Snakemake stopped at another job's failure, or
its own job failed) keeps the ``metrics.csv`` and ``run.json`` of the old config, with
``"status": "complete"``. Its numbers must not be reported as the current config's, so a phase
is admitted only when the ``config_hash`` its ``run.json`` records equals the hash the current
config resolves to for its task, method and phase: the same
:func:`calql.training.resolve.phase_hash` that training compares before it skips a finished phase
(:func:`calql.training.phase_files.already_complete`) and a checkpoint's identity uses. Anything else
is ``stale``, with both hashes and, from the ``config`` the ``run.json`` records, the keys that
changed.
"""

from __future__ import annotations

from typing import Any

from calql.run_files import phase_config, phase_hash
from calql.training.resolve import resolve_all

#: Changed keys named in one missing.csv detail; the rest are counted.
MAX_NAMED_KEYS = 6

#: Resolved run configs by (task, method), from :func:`calql.training.resolve.resolve_all`.
CurrentRuns = dict[tuple[str, str], dict[str, Any]]


def current_runs(config: dict[str, Any]) -> CurrentRuns:
    """Every (task, method) run the config resolves to (as the workflow does before any job)."""
    return resolve_all(config)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": leaf}``; a non-dict (list, scalar, None) is a leaf."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


_ABSENT = "<absent>"


def changed_keys(recorded: dict[str, Any], current: dict[str, Any], phase: str) -> list[str]:
    """Dotted keys of the phase's config that differ, as ``"key: old -> new"``.

    Fine-tuning depends on pre-training through ``pretrain_hash``; that key is replaced by the
    pre-training keys that changed, which is what a reader can act on.
    """
    old, new = _flatten(phase_config(recorded, phase)), _flatten(phase_config(current, phase))
    if phase == "finetune" and old.get("pretrain_hash") != new.get("pretrain_hash"):
        old.pop("pretrain_hash", None)
        new.pop("pretrain_hash", None)
        old.update(_flatten(recorded.get("pretrain"), "pretrain"))
        new.update(_flatten(current.get("pretrain"), "pretrain"))
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, _ABSENT) != new.get(k, _ABSENT))
    return [f"{k}: {old.get(k, _ABSENT)!r} -> {new.get(k, _ABSENT)!r}" for k in keys]


def stale_detail(record: dict[str, Any], current: dict[str, Any], phase: str) -> str | None:
    """None when ``record`` (a run.json) was made with ``current`` (a resolved run config) for
    ``phase``; else why not: both hashes and the changed keys where the record lets us name them."""
    expected = phase_hash(current, phase)
    found = record.get("config_hash")
    if found == expected:
        return None
    detail = f"made with another config: run.json config_hash {found}, the current config's {expected}"
    recorded = record.get("config")
    if not isinstance(recorded, dict):
        return f"{detail}; changed keys unknown (run.json records no config)"
    try:
        changes = changed_keys(recorded, current, phase)
    except (KeyError, TypeError, ValueError):  # a record of another layout: the hashes say enough
        changes = []
    if not changes:
        return f"{detail}; changed keys unknown (the recorded config resolves to the same keys)"
    named = "; ".join(changes[:MAX_NAMED_KEYS])
    more = f"; and {len(changes) - MAX_NAMED_KEYS} more" if len(changes) > MAX_NAMED_KEYS else ""
    return f"{detail}; changed: {named}{more}; rerun the workflow to replace it"
