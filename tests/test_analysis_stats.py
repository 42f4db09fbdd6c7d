"""IQM, standard errors, stratified bootstrap and seed-averaged curves on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.stats import (
    aggregate_stats,
    curve_band,
    iqm,
    mean_se,
    per_task_stats,
    stratified_bootstrap,
    t_interval,
)


def test_iqm_hand_computed() -> None:
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # cut 2 each end: mean(3, 4, 5, 6)
    assert iqm(np.array([0, 0, 0, 0, 100, 100, 100, 100])) == pytest.approx(50.0)
    assert iqm(np.array([1.0, 2.0, 3.0, 100.0])) == pytest.approx(2.5)  # cut 1 each end
    assert iqm(np.array([1.0, 2.0, 30.0])) == pytest.approx(11.0)  # n < 4: plain mean
    assert np.allclose(iqm(np.array([[1, 2, 3, 100], [4, 4, 4, 4]]), axis=-1), [2.5, 4.0])


def test_mean_se_and_t_interval() -> None:
    n, mean, se = mean_se([1.0, 2.0, 3.0, float("nan")])
    assert (n, mean) == (3, 2.0) and se == pytest.approx(1 / math.sqrt(3))
    low, high = t_interval(mean, se, n, 0.95)
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t_{0.975, 2}
    assert math.isnan(mean_se([5.0])[2]) and math.isnan(t_interval(5.0, float("nan"), 1)[0])
    assert mean_se([])[0] == 0


def test_bootstrap_reproducible_and_contains_point() -> None:
    rng = np.random.default_rng(123)
    groups = [rng.normal(50, 10, size=5), rng.normal(70, 5, size=4), rng.normal(20, 20, size=3)]
    a = stratified_bootstrap(groups, n_bootstrap=500, rng=np.random.default_rng(7))
    b = stratified_bootstrap(groups, n_bootstrap=500, rng=np.random.default_rng(7))
    c = stratified_bootstrap(groups, n_bootstrap=500, rng=np.random.default_rng(8))
    assert a == b
    assert a[1:] != c[1:]
    point, low, high = a
    assert point == pytest.approx(iqm(np.concatenate(groups)))
    assert low < point < high


def test_bootstrap_is_stratified_by_task() -> None:
    # Each resample keeps 3 runs of task A (all 0) and 1 of task B (100): the pooled mean is
    # always 25. An unstratified bootstrap over the 4 pooled runs would vary.
    point, low, high = stratified_bootstrap(
        [np.zeros(3), np.array([100.0])], statistic=lambda x: x.mean(axis=-1), n_bootstrap=200
    )
    assert point == low == high == 25.0


def test_bootstrap_percentiles_match_direct_computation() -> None:
    group = np.array([0.0, 10.0])
    _, low, high = stratified_bootstrap(
        [group], statistic=lambda x: x.mean(axis=-1), n_bootstrap=4000, ci=0.5, rng=np.random.default_rng(0)
    )
    # resampled means of 2 draws are 0 (p=.25), 5 (p=.5), 10 (p=.25): the 25/75% quantiles are 0..5 and 5..10
    assert 0.0 <= low <= 5.0 <= high <= 10.0


def scores_table() -> pd.DataFrame:
    rows = []
    for task, offset in (("a", 0.0), ("b", 10.0)):
        for seed, final in enumerate([60.0, 70.0, 80.0]):
            rows.append(
                {
                    "task": task,
                    "method": "calql",
                    "seed": seed,
                    "offline_score": 50.0 + offset,
                    "final_score": final + offset,
                    "improvement": final - 50.0,
                    "cumulative_regret": 0.1 * (seed + 1),
                    "unlearning_dip": 0.0,
                }
            )
            rows.append(
                {
                    "task": task,
                    "method": "sac",
                    "seed": seed,
                    "offline_score": np.nan,
                    "final_score": final / 2,
                    "improvement": np.nan,
                    "cumulative_regret": 0.5,
                    "unlearning_dip": 1.0,
                }
            )
    return pd.DataFrame(rows)


def test_per_task_stats_values() -> None:
    stats = per_task_stats(scores_table()).set_index(["task", "method", "metric"])
    row = stats.loc[("b", "calql", "final_score")]
    assert row["n_seeds"] == 3 and row["mean"] == pytest.approx(80.0) and row["se"] == pytest.approx(10 / math.sqrt(3))
    assert ("a", "sac", "offline_score") not in stats.index  # all NaN: no row, not a fake number


def test_aggregate_stats_iqm_rows_and_fixed_seed() -> None:
    scores = scores_table()
    agg = aggregate_stats(scores, n_bootstrap=300, seed=3)
    again = aggregate_stats(scores, n_bootstrap=300, seed=3)
    pd.testing.assert_frame_equal(agg, again)
    row = agg[(agg.method == "calql") & (agg.metric == "final_score") & (agg.estimator == "iqm")].iloc[0]
    # pooled [60, 70, 80, 70, 80, 90]: cut 1 each end -> mean(70, 70, 80, 80) = 75
    assert row["value"] == pytest.approx(75.0)
    assert row["n_tasks"] == 2 and row["n_runs"] == 6
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert agg[(agg.method == "sac") & (agg.metric == "offline_score")].empty


def test_curve_band_interpolates_seeds_onto_common_grid() -> None:
    curves = pd.DataFrame(
        {
            "seed": [0, 0, 0, 1, 1, 1],
            "env_steps": [0, 10, 20, 0, 12, 21],
            "score": [0.0, 10.0, 20.0, 0.0, 12.0, 21.0],  # both seeds: score = env_steps
        }
    )
    band = curve_band(curves, "env_steps", "score")
    # union grid inside both ranges: 0, 10, 12, 20 (21 lies beyond seed 0's last evaluation)
    assert list(band["env_steps"]) == [0, 10, 12, 20]
    assert np.allclose(band["mean"], band["env_steps"])
    assert np.allclose(band["low"], band["mean"]) and np.allclose(band["high"], band["mean"])
    single = curve_band(curves[curves.seed == 0], "env_steps", "score")
    assert single["low"].isna().all() and list(single["n"]) == [1, 1, 1]
