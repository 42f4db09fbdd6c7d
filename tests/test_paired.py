"""The paired comparison of the laptop-claim sweep's decision criteria, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.paired import bootstrap_mean_interval, paired_differences, paired_markdown


def scores(rows: list[tuple[str, int, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"task": "t", "method": m, "seed": s, "cumulative_regret": v, "status": st} for m, s, v, st in rows]
    )


def test_difference_is_b_minus_a_paired_by_seed_with_a_t_interval() -> None:
    table = scores(
        [
            ("calql", 0, 0.1, "complete"),
            ("calql", 1, 0.2, "complete"),
            ("calql", 2, 0.3, "complete"),
            ("cql", 2, 0.6, "complete"),  # order does not matter: pairs are by seed
            ("cql", 0, 0.2, "complete"),
            ("cql", 1, 0.4, "complete"),
        ]
    )
    row = paired_differences(table, "calql", "cql", metrics=("cumulative_regret",)).iloc[0]
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, se 0.1/sqrt(3); t_{0.975, 2} = 4.3027
    assert row["n_pairs"] == 3 and row["seeds"] == "0 1 2"
    assert row["mean_diff"] == pytest.approx(0.2)
    half = 4.302652729911275 * 0.1 / np.sqrt(3)
    assert (row["t_low"], row["t_high"]) == pytest.approx((0.2 - half, 0.2 + half))
    assert row["mean_a"] == pytest.approx(0.2) and row["mean_b"] == pytest.approx(0.4)
    assert row["b_minus_a_per_seed"] == "0.1 0.2 0.3"
    assert row["boot_low"] >= 0.1 - 1e-12 and row["boot_high"] <= 0.3 + 1e-12


def test_only_seeds_with_both_runs_complete_count() -> None:
    table = scores(
        [
            ("calql", 0, 0.1, "complete"),
            ("calql", 1, 0.2, "complete"),
            ("calql", 2, 0.3, "partial"),  # not complete: seed 2 drops out
            ("cql", 0, 0.3, "complete"),
            ("cql", 1, 0.5, "complete"),
            ("cql", 2, 0.9, "complete"),
            ("cql", 3, 0.9, "complete"),  # no Cal-QL run of seed 3
        ]
    )
    row = paired_differences(table, "calql", "cql", metrics=("cumulative_regret",)).iloc[0]
    assert row["seeds"] == "0 1" and row["mean_diff"] == pytest.approx(0.25)


def test_bootstrap_of_equal_differences_is_a_point_and_needs_two_seeds() -> None:
    rng = np.random.default_rng(0)
    assert bootstrap_mean_interval(np.array([0.5, 0.5, 0.5]), 100, 0.95, rng) == (0.5, 0.5)
    assert np.isnan(bootstrap_mean_interval(np.array([0.5]), 100, 0.95, rng)[0])


def test_markdown_names_the_direction() -> None:
    table = scores([("calql", 0, 0.1, "complete"), ("cql", 0, 0.3, "complete")])
    text = paired_markdown(
        paired_differences(table, "calql", "cql", metrics=("cumulative_regret",)), {"calql": "Cal-QL", "cql": "CQL"}
    )
    assert "CQL minus Cal-QL, paired by seed" in text and "| t | cumulative_regret | 1 |" in text
