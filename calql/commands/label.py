"""``calql label``: add Monte-Carlo returns to a task's dataset."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from calql.commands.common import add_config_args, load_task
from calql.data.damage import load_or_set_aside
from calql.data.format import save_dataset
from calql.data.label import label_dataset
from calql.data.preprocess import preprocess_dataset
from calql.envs.layout import check_layout
from calql.envs.make import env_layout

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "label",
        help="label a dataset with Monte-Carlo returns",
        description=(
            "Apply the task's reward transform (r * scale + bias) and compute Monte-Carlo returns "
            "as the official Cal-QL code: trajectories split at terminals, timeouts and "
            "discontinuities (next_obs[t] != obs[t+1]); with reward.sparse a trajectory that "
            "never succeeds gets r_neg / (1 - gamma) everywhere; reward.infinite_horizon adds "
            "the Kitchen tail. First the data are brought to the official convention of the task's "
            "domain (antmaze: a terminal at each success step, which converts Minari's continuing-task "
            "data; adroit: failed trajectories dropped, the rest cut after their last success, successes "
            "terminal; kitchen: the cumulative sub-task count) or to the task's `preprocess` switches; "
            "data in another convention and not converted are refused. Also checks that the dataset's "
            "observation layout matches the task's environment. Writes the dataset plus 'mc_returns' "
            "and 'train_rewards', and logs and stores a conventions summary (see `calql conventions`)."
        ),
        epilog="example: calql label --config config/config.yaml --task pointmaze-medium "
        "--dataset results/datasets/pointmaze-medium.hdf5 --out results/labeled/pointmaze-medium.hdf5",
    )
    add_config_args(p)
    p.add_argument("--dataset", required=True, type=Path, help="raw dataset from `calql dataset`")
    p.add_argument("--out", required=True, type=Path, help="labeled output HDF5 path")
    p.add_argument(
        "--skip-env-check", action="store_true", help="do not build the environment to compare observation layouts"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config, task = load_task(args)
    t0 = time.perf_counter()
    dataset = load_or_set_aside(args.dataset, task.name, "dataset")
    if not args.skip_env_check:
        check_layout(dataset.meta.get("obs_layout"), env_layout(task), what=f"environment {task.env_id}")
    labeled = label_dataset(preprocess_dataset(dataset, task), task, progress=not args.quiet)
    labeled.meta["task_config"] = config["tasks"][task.name]
    save_dataset(labeled, args.out)
    log.info("wrote %s (%.1f s)", args.out, time.perf_counter() - t0)
    return 0
