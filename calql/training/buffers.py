"""Training data on the device: the fixed offline dataset, the online FIFO replay buffer, and the
two ways fine-tuning batches combine them.

All hand out batches with the agent's keys (``observations, actions, rewards, next_observations,
dones, mc_returns``). Indices come from a numpy ``Generator`` owned by the training loop, so
sampling is reproducible and its state goes into checkpoints.

- :class:`MixedReplay` (official Cal-QL, IQL-F, RLPD): the offline data stay a separate array that
  online data never overwrite; each batch is ``int(batch * mixing_ratio)`` offline rows, then the
  rest from the online buffer.
- :class:`PooledReplay` (AWAC-F): ONE FIFO buffer of capacity ``finetune.buffer_size`` that the
  offline data fill first and online transitions then overwrite, oldest (offline) rows first,
  sampled uniformly (jaxrl ``ReplayBuffer``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from calql.config import RewardSpec
from calql.data.format import Dataset
from calql.data.mc_returns import label_returns
from calql.data.preprocess import split_observations
from calql.errors import ConfigError, DatasetError

#: Dataset actions are clipped to this (official ``clip_action``) so tanh-policy log-probs stay finite.
CLIP_ACTION = 0.99999
BATCH_KEYS = ("observations", "actions", "rewards", "next_observations", "dones", "mc_returns")

Batch = dict[str, torch.Tensor]


def training_arrays(
    dataset: Dataset, reward: RewardSpec, gamma: float, labeled_reward: RewardSpec
) -> dict[str, np.ndarray]:
    """The dataset as training arrays; re-labels rewards/MC returns if the run uses another transform.

    ``labeled_reward`` is the transform the file was labeled with (the task's); a method-specific
    transform (e.g. IQL's ``r - 1``) is recomputed here with the same MC-return code.
    """
    if not dataset.is_labeled:
        raise DatasetError("the dataset has no mc_returns/train_rewards: run `calql label` on it first")
    if reward == labeled_reward:
        rewards, mc = dataset.train_rewards, dataset.mc_returns
    else:
        rewards, mc, _ = label_returns(
            dataset.rewards, dataset.terminals, dataset.timeouts, reward, gamma, *split_observations(dataset)
        )
    return {
        "observations": dataset.observations,
        "actions": np.clip(dataset.actions, -CLIP_ACTION, CLIP_ACTION),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "next_observations": dataset.next_observations,
        "dones": dataset.terminals.astype(np.float32),
        "mc_returns": np.asarray(mc, dtype=np.float32),
    }


class OfflineData:
    """The labeled dataset as device tensors; uniform batches."""

    def __init__(self, arrays: dict[str, np.ndarray], device: torch.device):
        # copies (torch.tensor), never views of numpy memory: aligned storage, stable BLAS results
        self.tensors = {k: torch.tensor(np.ascontiguousarray(arrays[k]), device=device) for k in BATCH_KEYS}
        self.size = int(self.tensors["rewards"].shape[0])
        self.device = device
        if self.size == 0:
            raise DatasetError("the offline dataset is empty")

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        idx = torch.as_tensor(rng.integers(0, self.size, size=n), device=self.device)
        return {k: v.index_select(0, idx) for k, v in self.tensors.items()}

    def rows(self, idx: np.ndarray) -> Batch:
        t = torch.as_tensor(idx, device=self.device)
        return {k: v.index_select(0, t) for k, v in self.tensors.items()}


class OnlineBuffer:
    """FIFO replay of online transitions (with their MC returns), preallocated on the device.

    The ``added``-th transition ever added (0-based) sits at row ``added % capacity``:
    :class:`PooledReplay` relies on it to find the rows of its one FIFO."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device):
        self.capacity = int(capacity)
        self.device = device
        f32 = dict(dtype=torch.float32, device=device)
        self.tensors = {
            "observations": torch.zeros(self.capacity, obs_dim, **f32),
            "actions": torch.zeros(self.capacity, act_dim, **f32),
            "rewards": torch.zeros(self.capacity, **f32),
            "next_observations": torch.zeros(self.capacity, obs_dim, **f32),
            "dones": torch.zeros(self.capacity, **f32),
            "mc_returns": torch.zeros(self.capacity, **f32),
        }
        self.ptr = 0
        self.size = 0
        self.added = 0

    def add(self, arrays: dict[str, np.ndarray]) -> None:
        """Append one episode's transitions (oldest overwritten when full)."""
        n = len(arrays["rewards"])
        for start in range(0, n, self.capacity):  # an episode longer than the buffer keeps its tail
            chunk = {k: arrays[k][start : start + self.capacity] for k in BATCH_KEYS}
            m = len(chunk["rewards"])
            first = min(m, self.capacity - self.ptr)
            for k in BATCH_KEYS:
                src = torch.as_tensor(np.asarray(chunk[k], dtype=np.float32), device=self.device)
                self.tensors[k][self.ptr : self.ptr + first] = src[:first]
                if m > first:
                    self.tensors[k][: m - first] = src[first:]
            self.ptr = (self.ptr + m) % self.capacity
            self.size = min(self.size + m, self.capacity)
        self.added += n

    def set_latest(self, key: str, values: np.ndarray) -> None:
        """Overwrite ``key`` of the ``len(values)`` transitions added last (those still stored).

        Per-step fine-tuning adds an episode's transitions before its MC returns are known; they
        are written here when the episode ends."""
        m = min(len(values), self.size)
        rows = torch.as_tensor((self.ptr - m + np.arange(m)) % self.capacity, device=self.device)
        src = np.asarray(values[len(values) - m :], dtype=np.float32)
        self.tensors[key][rows] = torch.as_tensor(src, device=self.device)

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        if self.size == 0:
            raise RuntimeError("sampling from an empty online buffer")
        idx = torch.as_tensor(rng.integers(0, self.size, size=n), device=self.device)
        return {k: v.index_select(0, idx) for k, v in self.tensors.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "ptr": self.ptr,
            "size": self.size,
            "added": self.added,
            "capacity": self.capacity,
            "tensors": {k: v[: self.size].cpu().clone() for k, v in self.tensors.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"buffer capacity {state['capacity']} in the checkpoint, {self.capacity} configured")
        self.ptr, self.size = int(state["ptr"]), int(state["size"])
        self.added = int(state.get("added", self.size))  # older checkpoints: never wrapped if pooled
        for k, v in state["tensors"].items():
            self.tensors[k][: self.size] = v.to(self.device)


def mixed_batch(
    offline: OfflineData | None,
    online: OnlineBuffer,
    batch_size: int,
    mixing_ratio: float,
    rng: np.random.Generator,
) -> Batch:
    """``int(batch_size * mixing_ratio)`` offline rows then the rest online (official order)."""
    n_off = int(batch_size * mixing_ratio) if offline is not None else 0
    n_on = batch_size - n_off
    if n_off == 0:
        return online.sample(n_on, rng)
    off = offline.sample(n_off, rng)  # type: ignore[union-attr]
    if n_on == 0:
        return off
    on = online.sample(n_on, rng)
    return {k: torch.cat([off[k], on[k]], dim=0) for k in BATCH_KEYS}


class MixedReplay:
    """Offline data kept apart from the online FIFO; batches of a fixed offline share (Cal-QL's
    ``mixing_ratio``; IQL-F's ``MixingReplayBuffer``; RLPD's ``offline_ratio``)."""

    def __init__(self, offline: OfflineData | None, online: OnlineBuffer, mixing_ratio: float) -> None:
        self.offline = offline if mixing_ratio > 0 else None
        self.online = online
        self.mixing_ratio = float(mixing_ratio)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        return mixed_batch(self.offline, self.online, batch_size, self.mixing_ratio, rng)


class PooledReplay:
    """AWAC-F's one replay buffer: a FIFO of ``capacity`` rows (slots), sampled uniformly.

    As jaxrl's ``ReplayBuffer`` (nakamotoo/jaxrl, branch dev_mitsuhiko @ 1c7459c,
    ``jaxrl/datasets/replay_buffer.py``; ``examples/train_finetuning.py`` builds it with
    ``replay_buffer_size`` = 1e6, ``examples/configs/awac_default.py``): ``initialize_with_dataset``
    puts the N offline rows in slots 0..N-1 in dataset order (it asserts N <= capacity; refused
    here too) and sets the insert index to N; online transition t (0-based) goes to slot
    ``(N + t) % capacity``, so once full, online data overwrite the offline rows first, then the
    oldest online ones; ``sample`` draws slots uniformly from ``[0, size)``.

    Nothing is copied: the offline rows stay in :class:`OfflineData` and the online ones in the
    :class:`OnlineBuffer` (which must hold at least the online rows still in the pool); a slot
    is mapped to the newest transition written to it.
    """

    def __init__(self, offline: OfflineData, online: OnlineBuffer, capacity: int) -> None:
        if offline.size > capacity:
            raise ConfigError(
                f"finetune.pool_offline: the offline dataset has {offline.size} transitions, more than "
                f"finetune.buffer_size = {capacity} (the pooled replay holds both; AWAC-F's jaxrl "
                "ReplayBuffer refuses this too): raise finetune.buffer_size"
            )
        self.offline, self.online, self.capacity = offline, online, int(capacity)

    @property
    def size(self) -> int:
        return min(self.offline.size + self.online.added, self.capacity)

    def rows_of_slots(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(is_online, row)`` of each slot: the row in the online buffer or the offline data."""
        n_off, cap, added = self.offline.size, self.capacity, self.online.added
        first = (slots - n_off) % cap  # the first online transition written to the slot
        is_online = first < added
        newest = first + cap * ((added - 1 - first) // cap)  # the last one written to it
        if is_online.any() and int((added - newest[is_online]).max()) > self.online.capacity:
            raise RuntimeError("the online buffer is smaller than the online part of the pooled replay")
        return is_online, np.where(is_online, newest % self.online.capacity, slots)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        slots = rng.integers(0, self.size, size=batch_size)
        is_online, rows = self.rows_of_slots(slots)
        on = torch.as_tensor(is_online, device=self.online.device)
        on_rows = torch.as_tensor(rows[is_online], device=self.online.device)
        off_rows = torch.as_tensor(rows[~is_online], device=self.online.device)
        batch = {}
        for k in BATCH_KEYS:
            out = self.online.tensors[k].new_empty((batch_size, *self.online.tensors[k].shape[1:]))
            out[on] = self.online.tensors[k].index_select(0, on_rows)
            out[~on] = self.offline.tensors[k].index_select(0, off_rows)
            batch[k] = out
        return batch
