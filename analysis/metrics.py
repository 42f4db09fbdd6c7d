"""Per-run fine-tuning metrics: offline score, final score, cumulative regret, unlearning dip,
and the calibration gap of the pre-trained critic.

All take one phase's metrics table (one row per evaluation, sorted by ``env_steps``) with the
normalized ``score`` in 0-100.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def last_score(metrics: pd.DataFrame) -> float:
    """Score of the last evaluation (the end of the phase)."""
    return float(metrics["score"].iloc[-1])


def online_points(finetune: pd.DataFrame) -> pd.DataFrame:
    """The fine-tuning evaluations made after online data was collected (``env_steps > 0``)."""
    return finetune[finetune["env_steps"] > 0]


def cumulative_regret(finetune: pd.DataFrame) -> float:
    """Evaluation-based cumulative regret: mean over online evaluations of ``1 - score/100``.

    Computed on the run's own evaluation grid (every ``eval_every`` online env steps and at the
    end). It follows what is known of the Cal-QL paper's regret, which is only that it is
    evaluation-based (a CORL maintainer: the Cal-QL authors "report eval regret", CORL issue #76);
    the paper's exact formula and grid are not verified, and this definition is our reading,
    consistent with the official code's evaluation logging (docs/method.md#cumulative-regret). It
    is NOT CORL's ``train/regret`` (mean of ``1 - success`` over the stochastic *training*
    episodes). The fine-tuning start row (``env_steps == 0``, the pre-trained policy before any
    online step) is excluded: regret measures what happens during online interaction, and the
    start equals the offline score reported separately. Each evaluation point has equal weight.
    Scores are not clipped, so a score outside [0, 100] (possible for dense-reward tasks) gives a
    regret term outside [0, 1]. NaN if the run has no online evaluation.
    """
    points = online_points(finetune)["score"].to_numpy(dtype=float)
    if points.size == 0:
        return float("nan")
    return float(np.mean(1.0 - points / 100.0))


def start_score(finetune: pd.DataFrame) -> float:
    """Score at the start of fine-tuning: the first row, which should be at ``env_steps == 0``."""
    first = finetune.iloc[0]
    if first["env_steps"] != 0:
        log.warning(
            "%s/%s/seed%s: first fine-tuning evaluation is at env_steps=%s, not 0; using it as the start",
            first.get("task"),
            first.get("method"),
            first.get("seed"),
            first["env_steps"],
        )
    return float(first["score"])


def early_window(finetune: pd.DataFrame, early_fraction: float) -> pd.DataFrame:
    """Evaluations with ``env_steps <= early_fraction * budget``, the start point included.

    The budget is the run's last evaluated env step: training evaluates once more at the end of
    the online budget, so this is the budget without reading the training config.
    """
    if not 0.0 < early_fraction <= 1.0:
        raise ValueError(f"early_fraction must be in (0, 1], got {early_fraction}")
    budget = float(finetune["env_steps"].max())
    window = finetune[finetune["env_steps"] <= early_fraction * budget]
    return window if not window.empty else finetune.iloc[:1]


def unlearning_dip(finetune: pd.DataFrame, early_fraction: float = 0.25) -> float:
    """Score at the start of fine-tuning minus the minimum score over the early evaluations.

    "Early" is the first ``early_fraction`` of the online budget including the start point, so
    the dip is >= 0 and 0 when performance never drops below the starting score. This measures
    the initial "unlearning" the Cal-QL paper motivates calibration with.
    """
    start = start_score(finetune)
    lowest = float(early_window(finetune, early_fraction)["score"].min())
    return max(0.0, start - min(lowest, start))


def calibration_gap(pretrain: pd.DataFrame) -> float:
    """``Q(s, pi(s)) - G(s)`` at the end of pre-training, on the run's fixed dataset states.

    ``q_policy`` is the critic's value of the policy's own action and ``mc_return`` the
    Monte-Carlo return of the data from the same states (both means over the run's calibration
    states, in training-reward units). The paper's calibration claim in one number: CQL's values
    fall below the return of the data (gap < 0, over-conservative), while Cal-QL's are bounded
    below by it (gap >= 0 up to the data's imperfection). NaN if the phase logged no calibration.
    """
    if "q_policy" not in pretrain or "mc_return" not in pretrain:
        return float("nan")
    last = pretrain.iloc[-1]
    return float(last["q_policy"] - last["mc_return"])


def run_scores(
    pretrain: pd.DataFrame | None, finetune: pd.DataFrame | None, early_fraction: float = 0.25
) -> dict[str, float]:
    """Every per-run number of scores.csv; NaN for what a missing phase cannot give."""
    nan = float("nan")
    offline = last_score(pretrain) if pretrain is not None else nan
    gap = calibration_gap(pretrain) if pretrain is not None else nan
    if finetune is None:
        return {
            "offline_score": offline,
            "offline_q_gap": gap,
            "start_score": nan,
            "final_score": nan,
            "improvement": nan,
            "cumulative_regret": nan,
            "unlearning_dip": nan,
            "n_online_evals": 0,
            "online_env_steps": nan,
        }
    final = last_score(finetune)
    return {
        "offline_score": offline,
        "offline_q_gap": gap,
        "start_score": start_score(finetune),
        "final_score": final,
        "improvement": final - offline,
        "cumulative_regret": cumulative_regret(finetune),
        "unlearning_dip": unlearning_dip(finetune, early_fraction),
        "n_online_evals": int(len(online_points(finetune))),
        "online_env_steps": float(finetune["env_steps"].max()),
    }
