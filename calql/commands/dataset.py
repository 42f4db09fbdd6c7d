"""``calql dataset``: fetch (download, load) or generate a task's offline dataset."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from calql.commands.common import add_config_args, load_task
from calql.data.format import save_dataset
from calql.data.sources import fetch_dataset

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dataset",
        help="fetch or generate a task's offline dataset",
        description=(
            "Produce the raw offline dataset of one task in calql's HDF5 format (D4RL keys plus "
            "metadata), from the source the task's config names: 'generated' (PointMaze, scripted "
            "controller, no network), 'd4rl' (download by dataset name; cached), 'minari' (by "
            "versioned dataset id), 'file' (a local HDF5/NPZ) or 'awac_npy' (the paper's Adroit-binary "
            ".npy files, read as the official loader with a restricted unpickler). The output is "
            "written atomically."
        ),
        epilog="example: calql dataset --config config/config.yaml --task pointmaze-medium "
        "--out results/datasets/pointmaze-medium.hdf5",
    )
    add_config_args(p)
    p.add_argument("--out", required=True, type=Path, help="output HDF5 path")
    p.add_argument("--cache-dir", type=Path, default=None, help="download cache (default: <results_dir>/cache)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config, task = load_task(args)
    cache_dir = args.cache_dir or Path(config["results_dir"]) / "cache"
    t0 = time.perf_counter()
    dataset = fetch_dataset(task, cache_dir)
    dataset.meta.setdefault("task", task.name)
    dataset.meta["task_config"] = config["tasks"][task.name]  # resolved, with defaults
    checksum = save_dataset(dataset, args.out)
    log.info(
        "wrote %s: %d transitions, obs %d, act %d, sha256 %s… (%.1f s)",
        args.out,
        dataset.size,
        dataset.obs_dim,
        dataset.act_dim,
        checksum[:12],
        time.perf_counter() - t0,
    )
    return 0
