"""``calql check-config``: read, validate and resolve experiment configs as the workflow would.

Snakemake 9 loads ``--configfile`` files itself, before any workflow code runs, and on a YAML
syntax error says only "Config file is not valid JSON or YAML" (no file, no line). This command
names the file, line and column, then runs the same schema check, hyperparameter resolution and
data-source checks as the workflow (:mod:`calql.data.sources.preflight`: local files present,
Minari ids well-formed, env ids registered), and prints the effective budget of every task x
method and what the dataset jobs will download or generate, so that what a command will run can
be seen before it runs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from calql.agents import config_methods
from calql.config import read_config_file, validate_config
from calql.data.sources.preflight import check_sources
from calql.errors import ConfigError
from calql.training.resolve import resolve_all

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate experiment config files and print their effective budgets",
        description=(
            "Read each config file (a YAML error names the file, line and column), validate it "
            "against the schema, resolve every task x method's hyperparameters from the presets, "
            "check what the data sources need (local files, relative to the working directory, as "
            "the workflow's jobs read them; Minari ids; registered env ids), and print the effective "
            "budgets and what the dataset jobs will download or generate. Exit status 2 if any file "
            "is invalid."
        ),
        epilog="example: calql check-config config/paper.yaml",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="experiment config file(s)")
    p.set_defaults(func=run)


def budget_lines(config: dict[str, Any]) -> list[str]:
    """One line per task x method: the resolved pre-training steps and fine-tuning env steps."""
    lines = []
    for (task, method), run in resolve_all(config).items():
        pretrain = run.get("pretrain")
        offline = f"{pretrain['steps']:>9,} offline steps" if pretrain else f"{'no':>9} pre-training "
        online = f"{run['finetune']['env_steps']:>9,} online env steps"
        lines.append(f"  {task:<28} {method:<12} {offline}  {online}")
    return lines


def check_file(path: Path) -> list[str]:
    """The report for one file; raises ConfigError (naming file and problem) if it is invalid."""
    config = read_config_file(path)
    try:
        config = validate_config(config)
        lines = budget_lines(config)
        sources = check_sources(config)
        sources.raise_for_problems()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    n_runs = len(config["tasks"]) * len(config_methods(config)) * len(config["seeds"])
    head = (
        f"{path}: valid; experiment {config['experiment']!r}, {len(config['tasks'])} task(s) x "
        f"{len(config['methods'])} method(s) x {len(config['seeds'])} seed(s) = {n_runs} runs"
    )
    return [head, *lines, *(f"  note: {note}" for note in sources.notes)]


def run(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            print("\n".join(check_file(path)))
        except ConfigError as exc:
            log.error("%s", exc)
            failed += 1
    return 2 if failed else 0
