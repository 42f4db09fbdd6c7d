"""A short summary of a labeled dataset's conventions, to check a paper sweep's data before training.

``calql label`` stores it in the labeled file's metadata (``conventions``) and logs it;
``calql conventions`` writes it as one Markdown table per task for the Snakemake report. It says
which raw rewards the data hold, how many steps are terminals, timeouts and successes, how the
trajectories were split, dropped and truncated, the range of the MC returns, and every
conversion applied on the way (by the source reader and by :mod:`calql.data.preprocess`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from calql.data.format import Dataset
from calql.data.preprocess import OFFICIAL, success_steps

log = logging.getLogger(__name__)

#: Reward values listed one by one up to this many distinct values; beyond, only the range.
MAX_LISTED_VALUES = 8
#: Metadata key where a source reader records what it changed (e.g. the Adroit .npy reader).
SOURCE_CONVENTIONS_KEY = "source_conventions"


def _values(arr: np.ndarray) -> str:
    values = np.unique(np.round(np.asarray(arr, dtype=np.float64), 6))
    if len(values) <= MAX_LISTED_VALUES:
        return ", ".join(f"{v:g}" for v in values)
    return f"{len(values)} distinct in [{values[0]:g}, {values[-1]:g}]"


def summarize(dataset: Dataset) -> dict[str, Any]:
    """The conventions summary of a labeled dataset (its ``meta["labeling"]`` must be set)."""
    if not dataset.is_labeled or "labeling" not in dataset.meta:
        raise ValueError("summarize needs a labeled dataset (run `calql label` first)")
    meta = dataset.meta
    labeling = meta["labeling"]
    stats, reward = labeling["stats"], labeling["reward"]
    domain = labeling.get("domain") or (meta.get("task_config") or {}).get("domain", "?")
    source_record = meta.get(SOURCE_CONVENTIONS_KEY) or {}
    pre = meta.get("preprocess") or {}
    out: dict[str, Any] = {
        "task": meta.get("task", "?"),
        "domain": domain,
        "source": (meta.get("source") or {}).get("kind", "?"),
        "official convention": OFFICIAL.get(domain, {}).get("source", "none (no official data for this domain)"),
        "transitions": dataset.size,
        "raw reward values": _values(dataset.rewards),
        "training reward values": _values(dataset.train_rewards),
        "terminals": int(dataset.terminals.sum()),
        "timeouts": int(dataset.timeouts.sum()),
    }
    if reward.get("sparse"):
        success = success_steps(dataset.rewards, float(reward.get("negative_reward", 0.0)))
        out["success steps"] = int(success.sum())
        out["success steps not terminal"] = int((success & ~dataset.terminals).sum())
    else:
        out["last-step rewards of trajectories"] = _values(dataset.rewards[dataset.terminals | dataset.timeouts])
    if "kitchen_rewards_found" in pre:
        out["kitchen rewards found"] = pre["kitchen_rewards_found"]["kind"]
    out.update(
        {
            "trajectories": stats["n_trajectories"],
            "successful trajectories": stats["n_successful"],
            "split at discontinuities": stats["n_discontinuity_splits"],
            "dropped trajectories": int(source_record.get("dropped_trajectories", 0))
            + int(pre.get("dropped_trajectories", 0)),
            "truncated trajectories": int(source_record.get("truncated_trajectories", 0))
            + int(pre.get("truncated_trajectories", 0)),
            "MC return range": f"[{stats['return_min']:.2f}, {stats['return_max']:.2f}] (mean {stats['return_mean']:.2f})",
            "failure return": "none (dense rewards)"
            if stats["failure_value"] is None
            else f"{stats['failure_value']:.2f}",
            "conversions": [*source_record.get("conversions", []), *pre.get("conversions", [])] or ["none"],
        }
    )
    return out


def log_summary(summary: dict[str, Any]) -> None:
    """One INFO line per item, so a labeling log shows what the data are."""
    for key, value in summary.items():
        log.info("conventions: %s: %s", key, "; ".join(value) if isinstance(value, list) else value)


def to_markdown(summary: dict[str, Any]) -> str:
    """The summary as a two-column Markdown table (one per task in the report)."""
    lines = [f"# Data conventions: {summary['task']}", "", "| item | value |", "|---|---|"]
    for key, value in summary.items():
        text = "; ".join(value) if isinstance(value, list) else str(value)
        lines.append(f"| {key} | {text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
