"""The official offline-data conventions, applied (or enforced) by ``calql label`` before MC returns.

The official Cal-QL code reads each domain's data in one fixed convention; other sources of the
same tasks use other conventions, and labeling them as they are gives MC returns that disagree
with the online episodes. This module converts a dataset to its domain's official convention,
records every conversion in the metadata, and refuses data whose convention it finds wrong
and is not told to convert ("never label silently"):

- **Sparse tasks: every success step is a terminal.** Official AntMaze data (D4RL v2, read by
  ``qlearning_dataset_and_calc_mc``) have a terminal at each reward-1 step; the official
  Adroit-binary loader sets ``dones = (reward == 0)``; online, both domains end the episode at
  success (D4RL ``eval=True`` env; ``sampler.py`` ``done=True`` on ``goal_achieved``).
  Minari's ``D4RL/antmaze/*-v1`` data were recorded in a continuing task (``continuing_task=True,
  reset_target=False``: no terminations, reward 1 on every step spent at the goal; see
  ``scripts/D4RL/antmaze/create_antmaze_dataset.py`` in Farama's minari-dataset-generation-scripts),
  so labeled as they are a trajectory reaching the goal at step 300 of 1000 gets G ~ +500 instead
  of +5. Switch ``success_is_terminal`` (on by default for the antmaze and adroit domains).
- **Adroit-binary (official ``get_hand_dataset_with_mc_calculation``):** trajectories without any
  success are dropped (``drop_failed_trajectories``), the rest cut after their last success
  (``truncate_after_last_success``). On by default for the adroit domain.
- **Kitchen (official OFF-K with the D4RL fork, docs/method.md#kitchen-d4rl-fork):** the reward is
  the cumulative number of solved sub-tasks, and the score reads the last step's reward. A file
  whose rewards count the sub-tasks completed *in that step* (gymnasium-robotics
  ``FrankaKitchen-v1`` with ``remove_task_when_completed=True``, its default) is converted by a
  running sum per trajectory (``cumulative_rewards``, on by default for the kitchen domain).
  Minari's ``D4RL/kitchen/*-v2`` were recorded with ``remove_task_when_completed=False`` (reward =
  sub-tasks in their completed state), which is already the count the official code scores, so
  nothing changes for them.

A success step is one whose raw reward differs from ``reward.negative_reward``. Switches come from
the task's ``preprocess`` block OR its domain's official convention (:data:`OFFICIAL`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from calql.config import TaskSpec
from calql.data.format import Dataset
from calql.data.mc_returns import segment_ends
from calql.errors import DatasetError

log = logging.getLogger(__name__)

#: Switches a sparse task's success steps drive (meaningless for dense rewards).
SUCCESS_SWITCHES = ("drop_failed_trajectories", "truncate_after_last_success", "success_is_terminal")
#: Every switch, in the order they are applied.
SWITCHES = ("cumulative_rewards", *SUCCESS_SWITCHES)
#: The official convention of each domain: the switches it turns on, and where it is from.
OFFICIAL: dict[str, dict[str, Any]] = {
    "antmaze": {
        "switches": ("success_is_terminal",),
        "source": "D4RL antmaze-v2 terminals at reward-1 steps, read by JaxCQL/replay_buffer.py "
        "qlearning_dataset_and_calc_mc (docs/method.md#trajectory-splitting)",
    },
    "adroit": {
        "switches": SUCCESS_SWITCHES,
        "source": "JaxCQL/replay_buffer.py get_hand_dataset_with_mc_calculation "
        "(docs/method.md#adroit-binary-offline-data)",
    },
    "kitchen": {
        "switches": ("cumulative_rewards",),
        "source": "cumulative sub-task count of the official D4RL fork nakamotoo/D4RL "
        "(docs/method.md#kitchen-d4rl-fork)",
    },
}
#: Metadata key sources set when their trajectories are delimited by terminals/timeouts only (no
#: split where next_obs[t] != obs[t+1], as the official loader of that data does not split).
SEGMENTS_KEY = "segments"
#: A per-step-completion Kitchen file drops back after most rewarded steps; a cumulative one
#: almost never does (only when a solved sub-task is undone).
PER_STEP_DROP_SHARE = 0.5


@dataclass(frozen=True)
class Switch:
    """A resolved switch: whether it is on, and why (task config or the domain's convention)."""

    on: bool
    origin: str


def resolve_switches(task: TaskSpec) -> dict[str, Switch]:
    """The task's switches: its own ``preprocess`` keys OR its domain's official convention."""
    official = OFFICIAL.get(task.domain, {})
    out: dict[str, Switch] = {}
    for name in SWITCHES:
        if task.preprocess.get(name):
            out[name] = Switch(True, f"tasks.{task.name}.preprocess.{name}")
        elif name in official.get("switches", ()) and (task.reward.sparse or name not in SUCCESS_SWITCHES):
            out[name] = Switch(True, f"official {task.domain} convention: {official['source']}")
        else:
            out[name] = Switch(False, "off")
    return out


def success_steps(rewards: np.ndarray, negative_reward: float) -> np.ndarray:
    """Steps whose raw reward is not the failure reward."""
    return ~np.isclose(np.asarray(rewards, dtype=np.float64), negative_reward, rtol=0.0, atol=1e-6)


def split_observations(dataset: Dataset) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The observation arrays to split trajectories at discontinuities with, or ``(None, None)``
    when the source says its trajectories end only at terminals/timeouts (``meta["segments"]``)."""
    if dataset.meta.get(SEGMENTS_KEY) == "terminals":
        return None, None
    return dataset.observations, dataset.next_observations


def trajectory_ends(dataset: Dataset) -> np.ndarray:
    """Last step of each trajectory (terminals, timeouts and, see :func:`split_observations`,
    discontinuities)."""
    return segment_ends(dataset.terminals, dataset.timeouts, *split_observations(dataset))


def is_kitchen(task: TaskSpec) -> bool:
    """Kitchen data: the kitchen domain or a FrankaKitchen environment (whatever the domain)."""
    return task.domain == "kitchen" or task.env_id.startswith("FrankaKitchen")


def kitchen_reward_kind(rewards: np.ndarray, ends: np.ndarray) -> tuple[str, float | None]:
    """``("per_step_completions" | "cumulative" | "no_rewards", share)``: the share of rewarded
    steps (not the last of their trajectory) whose next reward is smaller."""
    r = np.asarray(rewards, dtype=np.float64)
    idx = np.flatnonzero((r[:-1] > 0) & ~ends[:-1])
    if len(idx) == 0:
        return "no_rewards", None
    share = float(np.mean(r[idx + 1] < r[idx]))
    return ("per_step_completions" if share > PER_STEP_DROP_SHARE else "cumulative"), share


def _running_sums(rewards: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Cumulative reward within each trajectory (restarts after every end)."""
    out = np.empty(len(rewards), dtype=np.float64)
    start = 0
    for end in np.flatnonzero(ends):
        out[start : end + 1] = np.cumsum(rewards[start : end + 1], dtype=np.float64)
        start = end + 1
    return out.astype(np.float32)


def _refuse(task: TaskSpec, found: str, switch: str, converts_to: str) -> DatasetError:
    return DatasetError(
        f"task '{task.name}' (domain {task.domain}): the data {found}. Labeled as they are, the MC "
        f"returns would not follow the official convention ({converts_to}). Set "
        f"tasks.{task.name}.preprocess.{switch}: true to convert them (the conversion is recorded "
        f"in the labeled dataset's metadata)"
    )


def _continuing_hint(dataset: Dataset) -> str:
    kwargs = dataset.meta.get("env_kwargs") or {}
    if kwargs.get("continuing_task"):
        return f" (recorded in {dataset.meta.get('env_id')} with continuing_task=True)"
    return ""


def preprocess_dataset(dataset: Dataset, task: TaskSpec) -> Dataset:
    """Convert ``dataset`` to the official convention of its task (module docstring).

    Returns ``dataset`` itself when nothing is on and nothing needs converting; otherwise a new
    dataset whose ``meta["preprocess"]`` records the switches, their origin and what changed.
    Raises :class:`DatasetError` for a convention it finds wrong and is not told to convert.
    Steps: Kitchen rewards (:func:`_kitchen_rewards`), then, for sparse tasks, the success
    switches (:func:`_success_switches`).
    """
    switches = resolve_switches(task)
    on = {name for name, s in switches.items() if s.on}
    record: dict[str, Any] = {"switches": {n: {"on": s.on, "origin": s.origin} for n, s in switches.items()}}
    ends = trajectory_ends(dataset)
    rewards, conversions = _kitchen_rewards(dataset.rewards, ends, task, on, record)
    if task.reward.sparse:
        return _success_switches(dataset, task, rewards, ends, on, conversions, record)
    if not (conversions or "kitchen_rewards_found" in record):
        return dataset
    record["conversions"] = conversions
    meta = {**dataset.meta, "preprocess": record}
    log.info("preprocess (task %s): %s", task.name, "; ".join(conversions) or "no change")
    return Dataset(
        observations=dataset.observations,
        actions=dataset.actions,
        rewards=rewards,
        terminals=dataset.terminals,
        timeouts=dataset.timeouts,
        next_observations=dataset.next_observations,
        meta=meta,
    )


def _kitchen_rewards(
    rewards: np.ndarray, ends: np.ndarray, task: TaskSpec, on: set[str], record: dict[str, Any]
) -> tuple[np.ndarray, list[str]]:
    """Kitchen data: record which reward kind was found; per-step completions become the
    cumulative count (``cumulative_rewards``) or are refused. Returns the rewards and the
    conversions made (none for other tasks)."""
    conversions: list[str] = []
    if not is_kitchen(task):
        return rewards, conversions
    kind, share = kitchen_reward_kind(rewards, ends)
    record["kitchen_rewards_found"] = {"kind": kind, "drop_after_reward_share": share}
    if kind != "per_step_completions":
        return rewards, conversions
    if "cumulative_rewards" not in on:
        raise _refuse(
            task,
            f"reward the sub-tasks completed in each step ({share:.0%} of rewarded "
            "steps are followed by a smaller reward)",
            "cumulative_rewards",
            "the cumulative number of solved sub-tasks",
        )
    conversions.append("per-step sub-task completions -> cumulative count per trajectory")
    return _running_sums(rewards, ends), conversions


def _success_switches(
    dataset: Dataset,
    task: TaskSpec,
    rewards: np.ndarray,
    ends: np.ndarray,
    on: set[str],
    conversions: list[str],
    record: dict[str, Any],
) -> Dataset:
    """A sparse task: refuse non-terminal success steps unless ``success_is_terminal``; apply the
    success switches that are on (``dataset`` itself when none is)."""
    success = success_steps(rewards, task.reward.negative_reward)
    nonterminal = success & ~dataset.terminals
    record["nonterminal_success_steps_found"] = int(nonterminal.sum())
    if nonterminal.any() and "success_is_terminal" not in on:
        raise _refuse(
            task,
            f"have {int(nonterminal.sum())} success steps (raw reward != "
            f"{task.reward.negative_reward}) that are not terminals{_continuing_hint(dataset)}",
            "success_is_terminal",
            "a terminal at every success step, as the online episode ends there",
        )
    if not (on & set(SUCCESS_SWITCHES)):
        return dataset

    keep, counts = _kept_steps(ends, success, on)
    if not keep.any():
        raise DatasetError(
            f"task '{task.name}': preprocessing dropped every transition "
            f"(no step has a raw reward other than {task.reward.negative_reward})"
        )
    terminals = dataset.terminals | success if "success_is_terminal" in on else dataset.terminals
    timeouts = dataset.timeouts.copy()
    # a kept trajectory cut before its end stops there: its last kept step ends the segment
    cut = np.flatnonzero(keep[:-1] & ~keep[1:])
    timeouts[cut] |= ~terminals[cut]
    if nonterminal.any():
        conversions.append(
            f"{int(nonterminal.sum())} non-terminal success steps marked terminal{_continuing_hint(dataset)}"
        )
    if counts["dropped_trajectories"]:
        conversions.append(f"{counts['dropped_trajectories']} trajectories without success dropped")
    if counts["truncated_trajectories"]:
        conversions.append(f"{counts['truncated_trajectories']} trajectories cut after their last success")
    record.update(**counts, kept_transitions=int(keep.sum()), conversions=conversions)
    _log_success_switches(task, record, dataset.size)
    return Dataset(
        observations=dataset.observations[keep],
        actions=dataset.actions[keep],
        rewards=rewards[keep],
        terminals=terminals[keep],
        timeouts=timeouts[keep],
        next_observations=dataset.next_observations[keep],
        meta={**dataset.meta, "preprocess": record},
    )


def _kept_steps(ends: np.ndarray, success: np.ndarray, on: set[str]) -> tuple[np.ndarray, dict[str, int]]:
    """The steps kept by ``drop_failed_trajectories`` and ``truncate_after_last_success``, and the
    counts of trajectories, dropped ones and truncated ones."""
    end_idx = np.flatnonzero(ends)
    starts = np.concatenate([[0], end_idx[:-1] + 1])
    keep = np.zeros(len(ends), dtype=bool)
    n_dropped = n_truncated = 0
    for s, e in zip(starts, end_idx):
        hits = np.flatnonzero(success[s : e + 1])
        if "drop_failed_trajectories" in on and len(hits) == 0:
            n_dropped += 1
            continue
        last = s + hits[-1] if ("truncate_after_last_success" in on and len(hits)) else e
        n_truncated += int(last < e)
        keep[s : last + 1] = True
    counts = {
        "trajectories": int(len(end_idx)),
        "dropped_trajectories": n_dropped,
        "truncated_trajectories": n_truncated,
    }
    return keep, counts


def _log_success_switches(task: TaskSpec, record: dict[str, Any], size: int) -> None:
    log.info(
        "preprocess (task %s): %d of %d trajectories dropped (no success), %d truncated after their "
        "last success; %d of %d transitions kept; %s",
        task.name,
        record["dropped_trajectories"],
        record["trajectories"],
        record["truncated_trajectories"],
        record["kept_transitions"],
        size,
        "; ".join(record["conversions"]) or "no change",
    )
