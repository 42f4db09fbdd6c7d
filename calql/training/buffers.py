"""Training data on the device: the fixed offline dataset and the online FIFO replay buffer.

Both hand out batches with the agent's keys (``observations, actions, rewards, next_observations,
dones, mc_returns``). Indices come from a numpy ``Generator`` owned by the training loop, so
sampling is reproducible and its state goes into checkpoints. The offline data stay a separate
array that online data never overwrite (spec 3); fine-tuning batches concatenate
``int(batch * mixing_ratio)`` offline rows with the rest from the online buffer (spec 4).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from calql.config import RewardSpec
from calql.data.format import Dataset
from calql.data.mc_returns import label_returns
from calql.data.preprocess import split_observations
from calql.errors import DatasetError

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
    """FIFO replay of online transitions (with their MC returns), preallocated on the device."""

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

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        if self.size == 0:
            raise RuntimeError("sampling from an empty online buffer")
        idx = torch.as_tensor(rng.integers(0, self.size, size=n), device=self.device)
        return {k: v.index_select(0, idx) for k, v in self.tensors.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "ptr": self.ptr,
            "size": self.size,
            "capacity": self.capacity,
            "tensors": {k: v[: self.size].cpu().clone() for k, v in self.tensors.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"buffer capacity {state['capacity']} in the checkpoint, {self.capacity} configured")
        self.ptr, self.size = int(state["ptr"]), int(state["size"])
        for k, v in state["tensors"].items():
            self.tensors[k][: self.size] = v.to(self.device)


def mixed_batch(
    offline: OfflineData | None,
    online: OnlineBuffer,
    batch_size: int,
    mixing_ratio: float | None,
    rng: np.random.Generator,
) -> Batch:
    """``int(batch_size * mixing_ratio)`` offline rows then the rest online (official order).

    ``mixing_ratio=None`` pools the two: rows are drawn uniformly from the offline data and the
    online buffer together, as when online data are appended to the offline replay buffer (AWAC-F),
    so the offline share falls as the online buffer grows."""
    if offline is not None and mixing_ratio is None:
        n_off = int((rng.integers(0, offline.size + online.size, size=batch_size) < offline.size).sum())
    else:
        n_off = int(batch_size * (mixing_ratio or 0.0)) if offline is not None else 0
    n_on = batch_size - n_off
    if n_off == 0:
        return online.sample(n_on, rng)
    off = offline.sample(n_off, rng)  # type: ignore[union-attr]
    if n_on == 0:
        return off
    on = online.sample(n_on, rng)
    return {k: torch.cat([off[k], on[k]], dim=0) for k in BATCH_KEYS}
