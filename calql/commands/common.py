"""Arguments shared by several sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from calql.config import TaskSpec, get_task, load_config


def add_config_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, required: bool = True) -> None:
    """``--config`` and ``--task``; ``required=False`` where another option can replace them
    (``pretrain``/``finetune``'s ``--run-config``), leaving the check to the command."""
    when = "" if required else "with --config: "
    parser.add_argument(
        "--config",
        required=required,
        type=Path,
        default=None,
        help="experiment config YAML (e.g. config/config.yaml); validated before anything runs",
    )
    parser.add_argument(
        "--task", required=required, default=None, help=f"{when}task name, a key of the config's `tasks`"
    )


def load_task(args: argparse.Namespace) -> tuple[dict[str, Any], TaskSpec]:
    config = load_config(args.config)
    return config, get_task(config, args.task)
