"""``calql conventions``: the data-conventions table of each labeled dataset, for the report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from calql.atomic import write_text
from calql.data.conventions import summarize, to_markdown
from calql.data.damage import load_or_set_aside

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "conventions",
        help="write the data-conventions table of labeled datasets",
        description=(
            "For each labeled dataset <task>.hdf5 (from `calql label`), write <out-dir>/<task>.md: the raw reward "
            "values, terminals, timeouts and success steps, how trajectories were split, dropped and "
            "truncated, the MC-return range and every conversion applied to reach the official data "
            "convention. Check these before spending GPU-days on a sweep."
        ),
        epilog="example: calql conventions --datasets results/labeled/*.hdf5 --out-dir results/summary/conventions",
    )
    p.add_argument("--datasets", required=True, nargs="+", type=Path, help="labeled HDF5 files")
    p.add_argument("--out-dir", required=True, type=Path, help="folder for the <task>.md tables")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for path in args.datasets:
        dataset = load_or_set_aside(path, path.stem, "label")  # named after their task
        dataset.meta.setdefault("task", path.stem)
        summary = summarize(dataset)  # recomputed: the stored copy's keys come back sorted
        out = args.out_dir / f"{path.stem}.md"  # the workflow names labeled files after their task
        write_text(out, to_markdown(summary))
        log.info("wrote %s", out)
    return 0
