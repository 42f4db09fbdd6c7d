"""The ``calql`` command line: one sub-command per workflow step, each runnable by hand.

Every sub-command lives in its own module under :mod:`calql.commands` and exposes
``add_parser(subparsers)`` (registers its arguments) and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from calql import __version__
from calql.errors import CalqlError

#: Sub-command name -> module under calql.commands, in the order of the workflow.
COMMANDS: dict[str, str] = {
    "dataset": "dataset",
    "label": "label",
    "conventions": "conventions",
    "pretrain": "pretrain",
    "finetune": "finetune",
    "track": "track",
    "check-config": "check_config",
}

log = logging.getLogger("calql")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calql",
        description=(
            "Cal-QL reproduction: fetch or generate offline datasets, label Monte-Carlo returns, "
            "pre-train offline and fine-tune online. Each sub-command is one workflow step; "
            "run `calql <command> --help` for its options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"calql {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        try:
            mod = importlib.import_module(f"calql.commands.{module}")
        except ModuleNotFoundError as exc:  # a command whose module is not in this build
            if exc.name != f"calql.commands.{module}":
                raise
            continue
        mod.add_parser(sub)
    return parser


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    return run_parsed(build_parser(), argv)


def run_parsed(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv``, set up logging and run ``args.func``: shared by ``calql`` and ``analysis``."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except CalqlError as exc:
        # Expected, user-facing failures: one clear line, no traceback.
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
