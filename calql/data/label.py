"""The labeling step: add Monte-Carlo returns and training rewards to a raw dataset."""

from __future__ import annotations

import logging

from calql.config import TaskSpec
from calql.data.conventions import log_summary, summarize
from calql.data.format import Dataset
from calql.data.mc_returns import label_returns
from calql.data.preprocess import split_observations
from calql.provenance import provenance

log = logging.getLogger(__name__)


def label_dataset(dataset: Dataset, task: TaskSpec, progress: bool = True) -> Dataset:
    """Return a copy of ``dataset`` with ``train_rewards`` and ``mc_returns``
    (docs/method.md#monte-carlo-returns) and its conventions summary in ``meta["conventions"]``.

    A source whose trajectories are delimited by terminals/timeouts only (``meta["segments"] ==
    "terminals"``, e.g. the official Adroit files) is not split at observation discontinuities,
    as its official loader does not split them.
    """
    observations, next_observations = split_observations(dataset)
    train_rewards, mc_returns, stats = label_returns(
        dataset.rewards,
        dataset.terminals,
        dataset.timeouts,
        task.reward,
        task.gamma,
        observations=observations,
        next_observations=next_observations,
        progress=progress,
    )
    meta = dict(dataset.meta)
    meta["labeling"] = {
        "domain": task.domain,
        "gamma": task.gamma,
        "reward": task.reward.__dict__,
        "scaled_negative_reward": task.reward.scaled_negative,
        "stats": stats.as_dict(),
        "provenance": provenance(),
    }
    if task.ref_min is not None:
        meta["ref_min_score"] = task.ref_min
    if task.ref_max is not None:
        meta["ref_max_score"] = task.ref_max
    log.info(
        "labeled %d transitions: %d trajectories (%d end at a terminal, %d at a timeout, "
        "%d split at discontinuities); successful: %.3f of trajectories, %.3f of transitions; MC return mean %.2f, std %.2f, "
        "min %.2f, max %.2f%s",
        stats.n_transitions,
        stats.n_trajectories,
        stats.n_terminal_segments,
        stats.n_timeout_segments,
        stats.n_discontinuity_splits,
        stats.success_share,
        stats.n_transitions_in_successful / max(stats.n_transitions, 1),
        stats.return_mean,
        stats.return_std,
        stats.return_min,
        stats.return_max,
        f"; failed trajectories get {stats.failure_value:.1f}" if stats.failure_value is not None else "",
    )
    if task.reward.sparse and stats.n_successful == 0:
        log.warning(
            "no trajectory reaches the goal: every MC return is the failure value. "
            "Check reward.negative_reward/scale/bias (r_neg = %.3f) against the data's rewards",
            task.reward.scaled_negative,
        )
    labeled = Dataset(
        observations=dataset.observations,
        actions=dataset.actions,
        rewards=dataset.rewards,
        terminals=dataset.terminals,
        timeouts=dataset.timeouts,
        next_observations=dataset.next_observations,
        mc_returns=mc_returns,
        train_rewards=train_rewards,
        meta=meta,
    )
    labeled.meta.setdefault("task", task.name)
    labeled.meta["conventions"] = summarize(labeled)
    log_summary(labeled.meta["conventions"])
    return labeled
