"""Minari datasets (e.g. ``D4RL/antmaze/large-diverse-v1``): load, flatten, convert to D4RL layout.

Minari stores whole episodes with T + 1 observations; each episode gives T transitions with
genuine next observations (``obs[:-1]`` -> observations, ``obs[1:]`` -> next_observations,
``terminations`` -> terminals, ``truncations`` -> timeouts), so nothing is dropped. Dict
observations are flattened with :func:`calql.envs.layout.flatten_obs` and the task's
``env.obs_keys`` - the very function the online environment wrapper uses, so the dataset and the
environment agree by construction.

The local Minari root is Minari's own (``MINARI_DATASETS_PATH``, default ``~/.minari/datasets``).
With ``download: true`` a missing dataset is fetched with ``minari.download_dataset`` (needs
``pip install "minari[hf]"`` and network access).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from calql.config import TaskSpec
from calql.data.format import Dataset
from calql.data.sources.meta import source_meta
from calql.envs.layout import DEFAULT_OBS_KEYS, flatten_obs, layout_of
from calql.errors import ConfigError, DatasetError, DownloadError, describe

log = logging.getLogger(__name__)


def _minari_root() -> Path:
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def _manual_hint(dataset_id: str) -> str:
    return (
        f'To place it by hand: on a machine with internet access run `pip install "minari[hf]"` and '
        f"`minari download {dataset_id}`, then copy its folder (~/.minari/datasets/{dataset_id}) to "
        f"{_minari_root() / dataset_id} (the local Minari root is MINARI_DATASETS_PATH). With no "
        f"network, HF_HUB_OFFLINE=1 makes a download attempt fail at once instead of retrying."
    )


def load(dataset_id: str, download: bool) -> Any:
    """``minari.load_dataset`` with clear errors; downloads when allowed and not found locally."""
    import minari

    try:
        return minari.load_dataset(dataset_id, download=False)
    except FileNotFoundError:
        if not download:
            raise DatasetError(
                f"Minari dataset '{dataset_id}' is not in the local Minari root "
                f"{_minari_root()} and source.download is false. {_manual_hint(dataset_id)}"
            ) from None
    except Exception as exc:  # a present but unreadable dataset
        raise DatasetError(f"cannot load Minari dataset '{dataset_id}' from {_minari_root()}: {describe(exc)}") from exc
    log.info("Minari dataset %s not found locally; downloading", dataset_id)
    try:
        minari.download_dataset(dataset_id)
    except Exception as exc:  # ImportError (no minari[hf]), HTTP/HF errors, unknown id, ...
        raise DownloadError(
            f"could not download Minari dataset '{dataset_id}' ({type(exc).__name__}: {exc}). "
            f"{_manual_hint(dataset_id)}"
        ) from exc
    try:
        return minari.load_dataset(dataset_id, download=False)
    except Exception as exc:
        raise DatasetError(f"downloaded Minari dataset '{dataset_id}' cannot be loaded: {describe(exc)}") from exc


def _spec_dict(raw: Any) -> dict[str, Any] | None:
    """An env spec stored in Minari metadata (JSON string) as a dict, or None."""
    if not raw:
        return None
    try:
        spec = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (TypeError, ValueError):
        return None
    return spec if isinstance(spec, dict) and spec.get("id") else None


def _episode_arrays(ep: Any, obs_keys: tuple[str, ...] | None) -> dict[str, np.ndarray]:
    obs = ep.observations
    if isinstance(obs, Mapping):
        for key in obs_keys or DEFAULT_OBS_KEYS:
            if key in obs and isinstance(obs[key], Mapping):
                raise DatasetError(
                    f"observation key '{key}' is itself a dict ({list(obs[key])}); choose flat keys "
                    f"in env.obs_keys (the dataset has {list(obs)})"
                )
    flat = flatten_obs(obs, obs_keys)
    flat = flat.reshape(flat.shape[0], -1)
    t = int(np.asarray(ep.rewards).shape[0])
    if flat.shape[0] != t + 1:
        raise DatasetError(f"episode {ep.id}: {flat.shape[0]} observations for {t} steps (expected {t + 1})")
    actions = np.asarray(ep.actions, dtype=np.float32).reshape(t, -1)
    return {
        "observations": flat[:-1],
        "next_observations": flat[1:],
        "actions": actions,
        "rewards": np.asarray(ep.rewards, dtype=np.float32).reshape(-1),
        "terminals": np.asarray(ep.terminations, dtype=bool).reshape(-1),
        "timeouts": np.asarray(ep.truncations, dtype=bool).reshape(-1),
    }


def fetch(task: TaskSpec, cache_dir: Path) -> Dataset:
    """Load ``task.source['id']`` from Minari and convert it (``cache_dir`` is not used: Minari
    keeps its own root)."""
    del cache_dir
    source = dict(task.source)
    dataset_id = str(source.get("id") or "")
    if not dataset_id:
        raise ConfigError(f"task '{task.name}': source kind 'minari' needs an 'id'")
    dataset = load(dataset_id, bool(source.get("download", True)))
    layout = layout_of(dataset.observation_space, task.obs_keys)

    parts: list[dict[str, np.ndarray]] = []
    for ep in tqdm(
        dataset.iterate_episodes(),
        total=dataset.total_episodes,
        desc=f"minari {dataset_id}",
        unit="ep",
        disable=None,
        leave=False,
    ):
        arrays = _episode_arrays(ep, task.obs_keys)
        if arrays["rewards"].size == 0:
            continue
        # An episode neither terminated nor truncated at its end was cut by the recorder.
        if not (arrays["terminals"][-1] or arrays["timeouts"][-1]):
            arrays["timeouts"][-1] = True
        parts.append(arrays)
    if not parts:
        raise DatasetError(f"Minari dataset '{dataset_id}' has no transitions")
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    if merged["observations"].shape[1] != sum(int(p["size"]) for p in layout):
        raise DatasetError(
            f"Minari dataset '{dataset_id}': flattened observations have {merged['observations'].shape[1]} "
            f"dims but its observation space gives layout {layout}"
        )

    metadata = dataset.storage.metadata
    env_spec = _spec_dict(metadata.get("env_spec"))
    eval_spec = _spec_dict(metadata.get("eval_env_spec"))
    found = {
        "minari_id": dataset_id,
        "minari_version": metadata.get("minari_version"),
        "path": str(Path(dataset.storage.data_path).parent),
        "total_episodes": int(dataset.total_episodes),
    }
    meta = source_meta(
        task,
        {**source, **found},
        layout,
        env=(env_spec["id"], dict(env_spec.get("kwargs") or {})) if env_spec else None,
        refs=(metadata.get("ref_min_score"), metadata.get("ref_max_score")),
        next_observations="stored",
    )
    if env_spec and env_spec.get("max_episode_steps"):
        meta["max_episode_steps"] = int(env_spec["max_episode_steps"])
    if eval_spec:
        meta["eval_env"] = {
            "id": eval_spec["id"],
            "kwargs": dict(eval_spec.get("kwargs") or {}),
            "max_episode_steps": eval_spec.get("max_episode_steps"),
        }
    if env_spec and env_spec["id"] != task.env_id:
        log.warning(
            "task '%s' uses env %s but Minari dataset %s was collected in %s",
            task.name,
            task.env_id,
            dataset_id,
            env_spec["id"],
        )
    log.info(
        "Minari %s: %d episodes, %d transitions, layout %s", dataset_id, len(parts), merged["rewards"].size, layout
    )
    return Dataset(**merged, meta=meta)
