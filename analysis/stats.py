"""Statistics over seeds and tasks: mean +- standard error, IQM with stratified-bootstrap CIs.

Follows rliable (Agarwal et al., 2021, "Deep RL at the edge of the statistical precipice"):
the interquartile mean (IQM) pools every run of every task and averages the middle 50%;
its confidence interval comes from a *stratified* bootstrap that resamples runs with
replacement within each task (so every task keeps its weight) and takes percentiles.
Implemented here with numpy/scipy (rliable is not a dependency) and a fixed random state.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

log = logging.getLogger(__name__)

#: Per-run numbers of scores.csv that are summarised, and whether higher is better (None: neither;
#: the calibration gap is read by its sign, not ranked).
METRICS: dict[str, bool | None] = {
    "offline_score": True,
    "offline_q_gap": None,
    "final_score": True,
    "improvement": True,
    "cumulative_regret": False,
    "unlearning_dip": False,
}


def present_metrics(scores: pd.DataFrame) -> list[str]:
    """The summarised metrics this scores table has (a scores.csv from before a metric existed
    lacks its column; it is skipped rather than failing the whole summary)."""
    return [m for m in METRICS if m in scores.columns]


def iqm(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: mean of the values left after cutting 25% from each end.

    Same as rliable (``scipy.stats.trim_mean(x, 0.25)``): ``int(0.25 n)`` values are cut from
    each end, so for n < 4 nothing is cut and the IQM equals the mean.
    """
    return sps.trim_mean(values, proportiontocut=0.25, axis=axis)


def mean_se(values: Sequence[float] | np.ndarray) -> tuple[int, float, float]:
    """(n, mean, standard error = sample std / sqrt(n)); NaNs are ignored, SE is NaN for n < 2."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return 0, float("nan"), float("nan")
    se = float(np.std(x, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return n, float(np.mean(x)), se


def t_interval(mean: float, se: float, n: int, ci: float = 0.95) -> tuple[float, float]:
    """Student-t interval ``mean +- t_{(1+ci)/2, n-1} * se`` (NaN when n < 2): few seeds per cell."""
    if n < 2 or not np.isfinite(se):
        return float("nan"), float("nan")
    half = float(sps.t.ppf(0.5 + ci / 2.0, df=n - 1)) * se
    return mean - half, mean + half


def _rng(seed: int, *labels: str) -> np.random.Generator:
    """A generator fixed by ``seed`` and the labels, so one interval does not depend on the others."""
    salt = [zlib.crc32(label.encode()) for label in labels]
    return np.random.default_rng(np.random.SeedSequence([seed, *salt]))


def stratified_bootstrap(
    groups: Sequence[np.ndarray],
    statistic: Callable[[np.ndarray], np.ndarray] = lambda x: iqm(x, axis=-1),
    n_bootstrap: int = 2000,
    ci: float = 0.95,
    rng: np.random.Generator | None = None,
) -> tuple[float, float, float]:
    """(point estimate, CI low, CI high) of ``statistic`` over the pooled runs of all groups.

    ``groups`` holds one array of per-run values per task (tasks may have different numbers of
    runs). Each resample draws, for every task independently, as many runs as it has, with
    replacement; the statistic is taken over the pooled resample. The interval is the percentile
    interval of the ``n_bootstrap`` resampled statistics. ``statistic`` maps ``[..., n_runs]``
    to ``[...]``.
    """
    groups = [np.asarray(g, dtype=float) for g in groups if len(g) > 0]
    if not groups:
        return float("nan"), float("nan"), float("nan")
    rng = rng if rng is not None else np.random.default_rng(0)
    point = float(statistic(np.concatenate(groups)))
    resampled = np.concatenate([g[rng.integers(0, g.size, size=(n_bootstrap, g.size))] for g in groups], axis=1)
    boot = statistic(resampled)
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return point, float(low), float(high)


def per_task_stats(scores: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """Mean +- standard error (and a t interval) over seeds, per task x method x metric."""
    rows = []
    metrics = present_metrics(scores)
    for (task, method), group in scores.groupby(["task", "method"], sort=True):
        for metric in metrics:
            n, mean, se = mean_se(group[metric])
            if n == 0:
                continue
            low, high = t_interval(mean, se, n, ci)
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "metric": metric,
                    "n_seeds": n,
                    "mean": mean,
                    "se": se,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows, columns=["task", "method", "metric", "n_seeds", "mean", "se", "ci_low", "ci_high"])


def aggregate_stats(scores: pd.DataFrame, n_bootstrap: int = 2000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """IQM and mean across tasks and seeds with stratified-bootstrap CIs, per method x metric."""
    estimators: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "iqm": lambda x: iqm(x, axis=-1),
        "mean": lambda x: np.mean(x, axis=-1),
    }
    all_tasks = set(scores["task"])
    rows = []
    metrics = present_metrics(scores)
    for method, group in scores.groupby("method", sort=True):
        for metric in metrics:
            per_task = {task: g[metric].dropna().to_numpy(dtype=float) for task, g in group.groupby("task", sort=True)}
            per_task = {task: v for task, v in per_task.items() if v.size}
            if not per_task:
                continue
            if set(per_task) != all_tasks:
                log.warning(
                    "%s %s: no runs for task(s) %s; its aggregate covers %d of %d tasks",
                    method,
                    metric,
                    sorted(all_tasks - set(per_task)),
                    len(per_task),
                    len(all_tasks),
                )
            for name, statistic in estimators.items():
                point, low, high = stratified_bootstrap(
                    list(per_task.values()), statistic, n_bootstrap, ci, _rng(seed, method, metric, name)
                )
                rows.append(
                    {
                        "method": method,
                        "metric": metric,
                        "estimator": name,
                        "value": point,
                        "ci_low": low,
                        "ci_high": high,
                        "n_tasks": len(per_task),
                        "n_runs": int(sum(v.size for v in per_task.values())),
                        "n_bootstrap": n_bootstrap,
                        "ci": ci,
                    }
                )
    return pd.DataFrame(
        rows,
        columns=[
            "method",
            "metric",
            "estimator",
            "value",
            "ci_low",
            "ci_high",
            "n_tasks",
            "n_runs",
            "n_bootstrap",
            "ci",
        ],
    )


def curve_band(curves: pd.DataFrame, x: str, y: str, ci: float = 0.95) -> pd.DataFrame:
    """Mean and t interval of ``y`` over seeds on a common ``x`` grid.

    Seeds evaluate at slightly different steps (at the first episode boundary after each
    multiple of the eval interval), so each seed's curve is linearly interpolated onto the union
    of all seeds' x values. Only grid points inside every seed's range are kept (no
    extrapolation, and every point averages the same seeds): the curve ends where the shortest
    seed ends, which for complete runs is less than one episode before the budget.
    """
    seeds = [
        (g[x].to_numpy(dtype=float), g[y].to_numpy(dtype=float))
        for _, g in curves.dropna(subset=[x, y]).groupby("seed", sort=True)
    ]
    seeds = [(xs, ys) for xs, ys in seeds if xs.size]
    if not seeds:
        return pd.DataFrame(columns=[x, "mean", "low", "high", "n"])
    grid = np.unique(np.concatenate([xs for xs, _ in seeds]))
    values = np.full((len(seeds), grid.size), np.nan)
    for i, (xs, ys) in enumerate(seeds):
        order = np.argsort(xs, kind="stable")
        xs, ys = xs[order], ys[order]
        inside = (grid >= xs[0]) & (grid <= xs[-1])
        values[i, inside] = np.interp(grid[inside], xs, ys)
    covered = ~np.isnan(values).any(axis=0)
    grid, values = grid[covered], values[:, covered]
    n = np.full(grid.size, len(seeds))
    mean = values.mean(axis=0)
    if len(seeds) > 1:
        se = values.std(axis=0, ddof=1) / np.sqrt(len(seeds))
        half = float(sps.t.ppf(0.5 + ci / 2.0, df=len(seeds) - 1)) * se
    else:
        half = np.full(grid.size, np.nan)
    return pd.DataFrame({x: grid, "mean": mean, "low": mean - half, "high": mean + half, "n": n})
