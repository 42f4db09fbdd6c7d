"""Offline-data filters of the official Adroit-binary loader (spec 2.3), as task options.

``get_hand_dataset_with_mc_calculation`` in the official code keeps only demonstrations that
succeed at least once, cuts each after its last success step and marks every success step as
terminal (``dones = (reward == 0)`` in raw Adroit-binary rewards). Here these are three
independent switches under a task's ``preprocess`` key, applied by ``calql label`` before the
MC returns, so any source (e.g. the paper's AWAC data converted to HDF5/NPZ) can use them.
"""

from __future__ import annotations

import logging

import numpy as np

from calql.config import TaskSpec
from calql.data.format import Dataset
from calql.data.mc_returns import segment_ends
from calql.errors import DatasetError

log = logging.getLogger(__name__)


def success_steps(rewards: np.ndarray, negative_reward: float) -> np.ndarray:
    """Steps whose raw reward is not the failure reward."""
    return ~np.isclose(np.asarray(rewards, dtype=np.float64), negative_reward, rtol=0.0, atol=1e-6)


def preprocess_dataset(dataset: Dataset, task: TaskSpec) -> Dataset:
    """Apply the task's ``preprocess`` switches; returns ``dataset`` itself when none is on."""
    opts = task.preprocess
    drop = bool(opts.get("drop_failed_trajectories"))
    truncate = bool(opts.get("truncate_after_last_success"))
    terminal = bool(opts.get("success_is_terminal"))
    if not (drop or truncate or terminal):
        return dataset
    success = success_steps(dataset.rewards, task.reward.negative_reward)
    ends = np.flatnonzero(segment_ends(dataset.terminals, dataset.timeouts,
                                       dataset.observations, dataset.next_observations))
    starts = np.concatenate([[0], ends[:-1] + 1])
    keep = np.zeros(dataset.size, dtype=bool)
    n_dropped = n_truncated = 0
    for s, e in zip(starts, ends):
        hits = np.flatnonzero(success[s : e + 1])
        if drop and len(hits) == 0:
            n_dropped += 1
            continue
        last = s + hits[-1] if (truncate and len(hits)) else e
        n_truncated += int(last < e)
        keep[s : last + 1] = True
    if not keep.any():
        raise DatasetError(f"task '{task.name}': preprocessing dropped every transition "
                           f"(no step has a raw reward other than {task.reward.negative_reward})")
    terminals = dataset.terminals | success if terminal else dataset.terminals
    timeouts = dataset.timeouts.copy()
    # a kept trajectory cut before its end stops there: its last kept step ends the segment
    cut = np.flatnonzero(keep[:-1] & ~keep[1:])
    timeouts[cut] |= ~terminals[cut]
    meta = dict(dataset.meta)
    meta["preprocess"] = {**opts, "trajectories": int(len(ends)), "dropped_trajectories": n_dropped,
                          "truncated_trajectories": n_truncated, "kept_transitions": int(keep.sum())}
    log.info("preprocess: %d of %d trajectories dropped (no success), %d truncated after their last "
             "success; %d of %d transitions kept", n_dropped, len(ends), n_truncated, int(keep.sum()),
             dataset.size)
    return Dataset(
        observations=dataset.observations[keep], actions=dataset.actions[keep],
        rewards=dataset.rewards[keep], terminals=terminals[keep], timeouts=timeouts[keep],
        next_observations=dataset.next_observations[keep], meta=meta,
    )
