"""Paired comparison of two methods over seeds: the per-seed difference of a metric, B minus A.

Seed s of two methods shares the task's data and nothing else, yet pairing by seed is how a
sweep's decision criteria are written (config/sweeps/README.md, "laptop-claim"): the difference
of each seed's cumulative regret (or dip, or score) between CQL and Cal-QL, with a 95% Student-t
interval over seeds (what decides) and a percentile bootstrap over seeds beside it (which does not
assume normal differences; with 5 seeds it is narrower than the t interval and not to be trusted
alone). Only seeds where both runs are complete and current count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.stats import _rng, mean_se, t_interval

#: The metrics compared by default (columns of scores.csv).
PAIRED_METRICS = ("offline_score", "offline_q_gap", "final_score", "cumulative_regret", "unlearning_dip")
COLUMNS = [
    "task",
    "metric",
    "a",
    "b",
    "n_pairs",
    "seeds",
    "mean_a",
    "mean_b",
    "mean_diff",
    "se_diff",
    "t_low",
    "t_high",
    "boot_low",
    "boot_high",
    "b_minus_a_per_seed",
]


def bootstrap_mean_interval(
    diffs: np.ndarray, n_bootstrap: int, ci: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile interval of the mean of ``diffs`` resampled with replacement (NaN for n < 2)."""
    if diffs.size < 2:
        return float("nan"), float("nan")
    means = diffs[rng.integers(0, diffs.size, size=(n_bootstrap, diffs.size))].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
    return float(low), float(high)


def paired_differences(
    scores: pd.DataFrame,
    a: str,
    b: str,
    metrics: tuple[str, ...] = PAIRED_METRICS,
    ci: float = 0.95,
    n_bootstrap: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per task x metric: B minus A per seed, its mean, t and bootstrap intervals."""
    complete = scores[scores["status"] == "complete"] if "status" in scores else scores
    rows = []
    for task, group in complete.groupby("task", sort=True):
        pair = group[group["method"] == a].merge(group[group["method"] == b], on="seed", suffixes=("_a", "_b"))
        for metric in metrics:
            if f"{metric}_a" not in pair:
                continue
            both = pair.dropna(subset=[f"{metric}_a", f"{metric}_b"]).sort_values("seed")
            if both.empty:
                continue
            diffs = (both[f"{metric}_b"] - both[f"{metric}_a"]).to_numpy(dtype=float)
            n, mean, se = mean_se(diffs)
            t_low, t_high = t_interval(mean, se, n, ci)
            boot_low, boot_high = bootstrap_mean_interval(diffs, n_bootstrap, ci, _rng(seed, str(task), metric))
            rows.append(
                {
                    "task": task,
                    "metric": metric,
                    "a": a,
                    "b": b,
                    "n_pairs": n,
                    "seeds": " ".join(str(int(s)) for s in both["seed"]),
                    "mean_a": float(both[f"{metric}_a"].mean()),
                    "mean_b": float(both[f"{metric}_b"].mean()),
                    "mean_diff": mean,
                    "se_diff": se,
                    "t_low": t_low,
                    "t_high": t_high,
                    "boot_low": boot_low,
                    "boot_high": boot_high,
                    "b_minus_a_per_seed": " ".join(f"{d:.4g}" for d in diffs),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def paired_markdown(paired: pd.DataFrame, labels: dict[str, str], ci: float = 0.95) -> str:
    """The paired table as Markdown: one line per task x metric."""
    if paired.empty:
        return "*No task has complete runs of both methods.*\n"
    a, b = labels[paired["a"].iloc[0]], labels[paired["b"].iloc[0]]
    pct = int(round(100 * ci))
    lines = [
        f"**{b} minus {a}, paired by seed.** Mean difference [{pct}% Student-t interval] "
        f"[{pct}% bootstrap over seeds]; n = seeds where both runs are complete.",
        "",
        f"| task | metric | n | {a} | {b} | {b} - {a} | t interval | bootstrap | per seed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in paired.itertuples():
        lines.append(
            f"| {r.task} | {r.metric} | {r.n_pairs} | {r.mean_a:.3g} | {r.mean_b:.3g} | {r.mean_diff:.3g} | "
            f"[{r.t_low:.3g}, {r.t_high:.3g}] | [{r.boot_low:.3g}, {r.boot_high:.3g}] | {r.b_minus_a_per_seed} |"
        )
    return "\n".join(lines) + "\n"
