"""Observation layout: how a dict observation is flattened into the vector the agent sees.

A layout is a list of ``{"key": name, "size": n}`` entries, in concatenation order. The dataset
stores its layout in its metadata and the environment wrapper computes its own from the same
``obs_keys``; :func:`check_layout` refuses a mismatch with a message naming both, because an agent
trained on one layout and run on another acts on garbage without any error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from calql.errors import EnvMismatchError

Layout = list[dict[str, Any]]

#: Keys concatenated by default for goal-conditioned dict observations.
DEFAULT_OBS_KEYS = ("observation", "desired_goal")


def layout_of(space: spaces.Space, obs_keys: Sequence[str] | None = None) -> Layout:
    """The layout produced by flattening ``space`` with ``obs_keys`` (flat Box: one 'obs' entry)."""
    if isinstance(space, spaces.Dict):
        keys = tuple(obs_keys) if obs_keys else DEFAULT_OBS_KEYS
        missing = [k for k in keys if k not in space.spaces]
        if missing:
            raise EnvMismatchError(
                f"observation keys {missing} not in the environment's dict observation (it has {list(space.spaces)})"
            )
        return [{"key": k, "size": int(np.prod(space.spaces[k].shape))} for k in keys]
    if isinstance(space, spaces.Box):
        return [{"key": "obs", "size": int(np.prod(space.shape))}]
    raise EnvMismatchError(f"unsupported observation space {space}")


def layout_size(layout: Layout) -> int:
    return int(sum(int(part["size"]) for part in layout))


def flatten_obs(obs: Any, obs_keys: Sequence[str] | None = None) -> np.ndarray:
    """Flatten one observation (dict or array) into float32, in ``obs_keys`` order.

    Works on a single observation or on batched arrays (leading axis = time), so datasets and
    environments share this single function.
    """
    if isinstance(obs, Mapping):
        keys = tuple(obs_keys) if obs_keys else DEFAULT_OBS_KEYS
        parts = [np.asarray(obs[k], dtype=np.float32) for k in keys]
        batched = parts[0].ndim > 1
        if batched:
            parts = [p.reshape(p.shape[0], -1) for p in parts]
            return np.concatenate(parts, axis=1)
        return np.concatenate([p.reshape(-1) for p in parts])
    return np.asarray(obs, dtype=np.float32)


def check_layout(dataset_layout: Layout | None, env_layout: Layout, what: str = "environment") -> None:
    """Raise EnvMismatchError if the dataset's layout differs from the environment's."""
    if dataset_layout is None:
        return
    norm = lambda lay: [(str(p["key"]), int(p["size"])) for p in lay]  # noqa: E731
    if norm(dataset_layout) != norm(env_layout):
        raise EnvMismatchError(
            f"observation layout mismatch: dataset has {norm(dataset_layout)} "
            f"(size {layout_size(dataset_layout)}) but the {what} gives {norm(env_layout)} "
            f"(size {layout_size(env_layout)}); check the task's env.obs_keys"
        )
