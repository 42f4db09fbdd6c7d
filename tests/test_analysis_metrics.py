"""Per-run metrics of the analysis stage on hand-made evaluation tables."""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest

from analysis.metrics import (
    calibration_gap,
    cumulative_regret,
    early_window,
    run_scores,
    start_score,
    unlearning_dip,
)


def finetune(env_steps: list[int], scores: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"task": "t", "method": "m", "seed": 0, "env_steps": env_steps, "score": scores})


def test_regret_is_mean_of_one_minus_score_over_online_evals_excluding_start() -> None:
    # start row (env_steps 0, score 50) is excluded: mean(1-0.2, 1-0.6, 1-1.0) = (0.8+0.4+0)/3
    ft = finetune([0, 100, 200, 300], [50.0, 20.0, 60.0, 100.0])
    assert cumulative_regret(ft) == pytest.approx(0.4)


def test_regret_extremes_and_no_online_points() -> None:
    assert cumulative_regret(finetune([0, 10, 20], [0.0, 100.0, 100.0])) == pytest.approx(0.0)
    assert cumulative_regret(finetune([0, 10, 20], [100.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert math.isnan(cumulative_regret(finetune([0], [30.0])))


def test_dip_uses_early_fraction_of_budget_including_start() -> None:
    ft = finetune([0, 100, 200, 300, 400], [50.0, 20.0, 10.0, 80.0, 90.0])
    # budget 400: 25% -> env_steps <= 100 -> min(50, 20) = 20 -> dip 30
    assert unlearning_dip(ft, 0.25) == pytest.approx(30.0)
    # 50% -> env_steps <= 200 -> min 10 -> dip 40
    assert unlearning_dip(ft, 0.5) == pytest.approx(40.0)
    assert list(early_window(ft, 0.5)["env_steps"]) == [0, 100, 200]


def test_dip_is_zero_without_a_drop_and_never_negative() -> None:
    assert unlearning_dip(finetune([0, 100, 200, 300], [40.0, 50.0, 60.0, 70.0])) == 0.0
    # a window of only the start point (fraction smaller than the first interval)
    assert unlearning_dip(finetune([0, 100, 200, 300], [40.0, 10.0, 60.0, 70.0]), 0.1) == 0.0


def test_early_fraction_is_checked() -> None:
    with pytest.raises(ValueError, match="early_fraction"):
        early_window(finetune([0, 1], [0.0, 1.0]), 0.0)


def test_start_not_at_zero_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert start_score(finetune([5, 100], [30.0, 40.0])) == 30.0
    assert "env_steps=5" in caplog.text


def test_run_scores_offline_nan_without_pretrain() -> None:
    ft = finetune([0, 100, 200], [10.0, 40.0, 70.0])
    pre = pd.DataFrame({"env_steps": [0, 0, 0], "score": [0.0, 30.0, 45.0]})
    with_pre = run_scores(pre, ft, 0.5)
    assert with_pre["offline_score"] == 45.0  # last pre-training evaluation
    assert with_pre["final_score"] == 70.0
    assert with_pre["improvement"] == pytest.approx(25.0)
    assert with_pre["n_online_evals"] == 2
    scratch = run_scores(None, ft)
    assert math.isnan(scratch["offline_score"]) and scratch["final_score"] == 70.0
    only_pre = run_scores(pre, None)
    assert only_pre["offline_score"] == 45.0 and math.isnan(only_pre["cumulative_regret"])


def test_calibration_gap_is_last_q_policy_minus_mc_return() -> None:
    # last pre-training evaluation: Q(s, pi(s)) = -571, data return -442 -> gap -129 (under-estimation)
    pre = pd.DataFrame({"score": [0.0, 40.0], "q_policy": [-10.0, -571.0], "mc_return": [-442.0, -442.0]})
    assert calibration_gap(pre) == pytest.approx(-129.0)
    assert run_scores(pre, None)["offline_q_gap"] == pytest.approx(-129.0)
    assert math.isnan(calibration_gap(pd.DataFrame({"score": [1.0]})))  # no diagnostic logged
    assert math.isnan(run_scores(None, finetune([0, 10], [0.0, 0.0]))["offline_q_gap"])
