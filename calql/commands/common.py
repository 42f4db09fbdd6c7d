"""Arguments shared by several sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from calql.config import TaskSpec, get_task, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        help="experiment config YAML (e.g. config/config.yaml); validated before anything runs",
    )
    parser.add_argument("--task", required=True, help="task name, a key of the config's `tasks`")


def load_task(args: argparse.Namespace) -> tuple[dict[str, Any], TaskSpec]:
    config = load_config(args.config)
    return config, get_task(config, args.task)
