"""D4RL datasets: download an HDF5 by dataset name, verify it, convert it to the calql format.

The URL table, expected dimensions and reference scores are data (``calql/data/d4rl_registry.json``,
copied from D4RL's ``infos.py`` and env registrations). The files are read with h5py only: the
``d4rl`` package needs MuJoCo 2.1 and legacy gym and cannot be imported on a current stack.

Conversion follows ``d4rl.qlearning_dataset`` (which the official Cal-QL code copies): when a file
has no ``next_observations``, ``next_obs[t] = obs[t + 1]`` and the rows where that is invalid are
dropped - every ``timeouts`` row (its successor starts a new episode) and the very last row. The
kept row before a dropped one is then the last step of a truncated trajectory, so it is flagged
``timeouts = True``; that keeps episode boundaries explicit for Monte-Carlo labeling. Terminal
rows are kept (their next observation is never bootstrapped from). Nothing is clipped here.

The task config's ``source`` block: ``name`` (required), ``base_url`` (replaces D4RL's URL prefix,
for mirrors), ``url`` (the full URL, overriding the table).
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from calql.atomic import write_json
from calql.config import TaskSpec
from calql.data.format import Dataset
from calql.data.sources.download import download, sha256_file
from calql.data.sources.meta import source_meta
from calql.envs.layout import DEFAULT_OBS_KEYS, Layout, layout_size
from calql.errors import ConfigError, DatasetError, EnvMismatchError, describe, suggest

log = logging.getLogger(__name__)

#: Arrays a D4RL file must have. ``timeouts`` is optional (old files): see :func:`recover_timeouts`.
D4RL_KEYS = ("observations", "actions", "rewards", "terminals")
OPTIONAL_KEYS = ("timeouts", "next_observations")


# ----------------------------------------------------------------------------- registry
@lru_cache(maxsize=1)
def registry() -> dict[str, Any]:
    """The D4RL table shipped with the package (see ``calql/data/d4rl_registry.json``)."""
    text = resources.files("calql").joinpath("data/d4rl_registry.json").read_text()
    return json.loads(text)


def lookup(name: str) -> dict[str, Any]:
    """The registry entry of dataset ``name``; ConfigError with close matches if unknown."""
    datasets = registry()["datasets"]
    if name not in datasets:
        raise ConfigError(
            f"unknown D4RL dataset '{name}'.{suggest(name, datasets)} Known datasets are listed in "
            f"calql/data/d4rl_registry.json; for another file set source.url (or use source kind 'file')."
        )
    return datasets[name]


def resolve_url(source: dict[str, Any], entry: dict[str, Any] | None) -> str:
    """``source.url`` if given, else ``base_url`` (source's or D4RL's) + the entry's path."""
    if source.get("url"):
        return str(source["url"])
    if entry is None:
        raise ConfigError(f"D4RL dataset '{source.get('name')}' has no URL: set source.url")
    base = str(source.get("base_url") or registry()["base_url"])
    return base.rstrip("/") + "/" + entry["path"].lstrip("/")


def cache_path(cache_dir: Path, name: str) -> Path:
    """Where dataset ``name`` is cached (and where a hand-downloaded file is picked up)."""
    return Path(cache_dir) / "d4rl" / f"{name}.hdf5"


# ----------------------------------------------------------------------------- D4RL format
def read_d4rl_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read the D4RL arrays of an HDF5 file; DatasetError if it is unreadable or lacks keys."""
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in D4RL_KEYS if k not in f]
            if missing:
                raise DatasetError(f"{path} lacks the D4RL arrays {missing} (it has {sorted(f.keys())})")
            keys = [*D4RL_KEYS, *(k for k in OPTIONAL_KEYS if k in f)]
            return {k: np.asarray(f[k][()]) for k in keys}
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"cannot read {path} as HDF5 (truncated or corrupted?): {describe(exc)}") from exc


def check_arrays(
    arrays: dict[str, np.ndarray], where: str, obs_dim: int | None = None, act_dim: int | None = None
) -> None:
    """Shapes: 2-D observations/actions, 1-D (or [N, 1]) scalars, one common length, expected dims."""
    for key in ("observations", "actions", "next_observations"):
        if key in arrays and arrays[key].ndim != 2:
            raise DatasetError(f"{where}: '{key}' has shape {arrays[key].shape}, expected [N, dim]")
    for key in ("rewards", "terminals", "timeouts"):
        if key not in arrays:
            continue
        arr = arrays[key]
        if not (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1)):
            raise DatasetError(f"{where}: '{key}' has shape {arr.shape}, expected [N]")
    n = arrays["observations"].shape[0]
    for key, arr in arrays.items():
        if arr.shape[0] != n:
            raise DatasetError(f"{where}: '{key}' has {arr.shape[0]} rows but 'observations' has {n} (truncated file?)")
    if n < 2:
        raise DatasetError(f"{where}: only {n} rows")
    if "next_observations" in arrays and arrays["next_observations"].shape != arrays["observations"].shape:
        raise DatasetError(f"{where}: 'next_observations' and 'observations' shapes differ")
    if obs_dim is not None and arrays["observations"].shape[1] != obs_dim:
        raise DatasetError(f"{where}: observations have {arrays['observations'].shape[1]} dims, expected {obs_dim}")
    if act_dim is not None and arrays["actions"].shape[1] != act_dim:
        raise DatasetError(f"{where}: actions have {arrays['actions'].shape[1]} dims, expected {act_dim}")


def recover_timeouts(terminals: np.ndarray, max_episode_steps: int) -> np.ndarray:
    """Timeouts of a file without them, by d4rl.qlearning_dataset's step counter (its
    ``final_timestep``), quirks included: after a terminal row the counter restarts at 1."""
    n = terminals.shape[0]
    timeouts = np.zeros(n, dtype=bool)
    step = 0
    for i in range(n - 1):
        final = step == max_episode_steps - 1
        timeouts[i] = final
        if final:
            step = 0
            continue
        if terminals[i]:
            step = 0
        step += 1
    return timeouts


def to_transitions(
    arrays: dict[str, np.ndarray], max_episode_steps: int | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """D4RL rows -> calql transitions (module docstring); returns arrays and what was done.

    ``max_episode_steps`` is only used for files without ``timeouts`` (as d4rl does).
    """
    obs = arrays["observations"]
    actions = arrays["actions"]
    rewards = arrays["rewards"].reshape(-1)
    terminals = arrays["terminals"].reshape(-1).astype(bool)
    n = rewards.shape[0]
    if "timeouts" in arrays:
        timeouts = arrays["timeouts"].reshape(-1).astype(bool)
        timeouts_from = "stored"
    elif max_episode_steps:
        timeouts = recover_timeouts(terminals, int(max_episode_steps))
        timeouts_from = f"recovered (every {int(max_episode_steps)} steps, as d4rl)"
        log.warning(
            "no 'timeouts' array: recovered from max_episode_steps=%d as d4rl.qlearning_dataset does", max_episode_steps
        )
    else:
        raise DatasetError(
            "the data have no 'timeouts' array and no max_episode_steps is known to recover them "
            "(set the task's env.max_episode_steps, or add a 'timeouts' array)"
        )
    if "next_observations" in arrays:
        out = dict(
            observations=obs,
            actions=actions,
            rewards=rewards,
            terminals=terminals,
            timeouts=timeouts.copy(),
            next_observations=arrays["next_observations"],
        )
        info: dict[str, Any] = {"next_observations": "stored", "raw_rows": n, "dropped_rows": 0}
    else:
        keep = ~timeouts
        keep[-1] = False
        idx = np.flatnonzero(keep)
        # A kept row whose successor row is dropped ends a truncated trajectory.
        new_timeouts = ~keep[idx + 1] | (idx + 1 == n - 1)
        out = dict(
            observations=obs[idx],
            actions=actions[idx],
            rewards=rewards[idx],
            terminals=terminals[idx],
            timeouts=new_timeouts & ~terminals[idx],
            next_observations=obs[idx + 1],
        )
        info = {"next_observations": "synthesized", "raw_rows": n, "dropped_rows": int(n - idx.size)}
    # The data end mid-trajectory unless the last row ends an episode: mark it truncated.
    added = 0
    if out["rewards"].size and not (out["terminals"][-1] or out["timeouts"][-1]):
        out["timeouts"][-1] = True
        added = 1
    info["end_marked_timeout"] = bool(added)
    info["timeouts"] = timeouts_from
    return out, info


def layout_for(entry: dict[str, Any] | None, obs_dim: int) -> Layout:
    """The registry's layout, or one flat ``obs`` entry for files the registry does not know."""
    if entry is not None:
        layout = [dict(part) for part in entry["obs_layout"]]
        if layout_size(layout) != obs_dim:
            raise DatasetError(f"registry layout {layout} does not sum to the data's {obs_dim} dims")
        return layout
    return [{"key": "obs", "size": int(obs_dim)}]


def check_obs_keys(task: TaskSpec, layout: Layout, what: str) -> None:
    """Fail now, not hours later in fine-tuning, if the task flattens its env in another order."""
    keys = [str(p["key"]) for p in layout]
    if keys == ["obs"]:
        return
    task_keys = list(task.obs_keys or DEFAULT_OBS_KEYS)
    if task_keys != keys:
        raise EnvMismatchError(
            f"task '{task.name}': {what} observations are laid out as {layout}, but env.obs_keys is "
            f"{task_keys}; set env.obs_keys: [{', '.join(keys)}]"
        )


# ----------------------------------------------------------------------------- fetch
def _verified_arrays(
    path: Path, entry: dict[str, Any] | None, digest: str | None = None
) -> tuple[dict[str, np.ndarray], str]:
    """Read and check ``path`` against the registry; returns arrays and the file's SHA-256
    (``digest`` when the caller already hashed the bytes while downloading)."""
    digest = digest or sha256_file(path)
    expected_sha = (entry or {}).get("sha256")
    if expected_sha and digest != expected_sha.lower():
        raise DatasetError(f"{path}: SHA-256 {digest} differs from the registry's {expected_sha}")
    arrays = read_d4rl_arrays(path)
    check_arrays(arrays, str(path), (entry or {}).get("obs_dim"), (entry or {}).get("act_dim"))
    return arrays, digest


def fetch(task: TaskSpec, cache_dir: Path) -> Dataset:
    """Download (or reuse the cached) D4RL file of ``task.source['name']`` and convert it."""
    source = dict(task.source)
    name = str(source.get("name") or "")
    if not name:
        raise ConfigError(f"task '{task.name}': source kind 'd4rl' needs a 'name'")
    entry = registry()["datasets"].get(name)
    if entry is None and not source.get("url"):
        lookup(name)  # raises with suggestions
    url = resolve_url(source, entry)
    path = cache_path(cache_dir, name)
    record = path.with_name(path.name + ".json")

    arrays: dict[str, np.ndarray] | None = None
    downloaded = False
    if path.exists():
        try:
            arrays, digest = _verified_arrays(path, entry)
            log.info("using cached %s", path)
            if record.exists():
                cached_url = json.loads(record.read_text()).get("url")
                if cached_url and cached_url != url:
                    log.warning("%s was downloaded from %s, not %s; delete it to download again", path, cached_url, url)
        except DatasetError as exc:
            bad = path.with_name(path.name + ".corrupt")
            os.replace(path, bad)
            record.unlink(missing_ok=True)
            log.warning("cached %s is unusable (%s); moved to %s and downloading again", path, exc, bad)
    if arrays is None:
        got = download(url, path, sha256=(entry or {}).get("sha256"))
        downloaded = True
        try:
            arrays, digest = _verified_arrays(path, entry, got.sha256)
        except DatasetError as exc:
            bad = path.with_name(path.name + ".corrupt")
            os.replace(path, bad)
            raise DatasetError(
                f"the file downloaded from {url} is not a valid D4RL dataset ({describe(exc)}); moved it to {bad}"
            ) from exc
        write_json(record, {"url": url, "sha256": got.sha256, "size": got.size})

    arrays_out, info = to_transitions(arrays, task.max_episode_steps or (entry or {}).get("max_episode_steps"))
    layout = layout_for(entry, arrays_out["observations"].shape[1])
    if entry is not None and entry.get("env_compatible") != "none":
        check_obs_keys(task, layout, f"D4RL dataset '{name}'")
    if entry is not None and entry.get("env_id") and entry["env_id"] != task.env_id:
        log.warning(
            "task '%s' uses env %s; calql's registry pairs D4RL '%s' with %s",
            task.name,
            task.env_id,
            name,
            entry["env_id"],
        )
    found = {"url": url, "file": str(path), "sha256": digest, "size": path.stat().st_size, "downloaded": downloaded}
    meta = source_meta(
        task,
        {**source, **found},
        layout,
        refs=((entry or {}).get("ref_min_score"), (entry or {}).get("ref_max_score")),
        next_observations=info["next_observations"],
        conversion=info,
    )
    if entry is not None:
        meta["d4rl"] = {
            k: entry[k]
            for k in ("env_id", "env_kwargs", "max_episode_steps", "eval_reset", "env_compatible", "notes")
            if k in entry
        }
    log.info(
        "D4RL %s: %d transitions (%s next observations, %d rows dropped)",
        name,
        arrays_out["rewards"].size,
        info["next_observations"],
        info["dropped_rows"],
    )
    return Dataset(**arrays_out, meta=meta)
