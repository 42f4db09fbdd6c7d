"""``python -m analysis``: aggregate run files, compute statistics, draw figures, write tables.

Each sub-command is one Snakemake rule with explicit inputs and outputs; ``all`` runs them in
order for use by hand. Paths default to the config's ``results_dir`` (R): runs in ``R/runs``,
tables in ``R/summary``, figures in ``R/figures``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from calql.errors import CalqlError
from calql.run_files import RUNS_SUBDIR, runs_dir_of

log = logging.getLogger("analysis")


def _load(args: argparse.Namespace) -> tuple[dict[str, Any] | None, Any]:
    from analysis.config import AnalysisConfig
    from analysis.palette import use_config
    from calql.config import load_config

    config = load_config(args.config) if args.config else None
    use_config(config)  # labels, colours and order of the config's methods and variants
    return config, AnalysisConfig.from_config(config)


def _path(value: str | None, config: dict[str, Any] | None, default: str, option: str) -> Path:
    """An explicit path, else ``<results_dir>/<default>`` from the config, else an error."""
    if value:
        return Path(value)
    if config is not None:
        return Path(config["results_dir"]) / default
    raise CalqlError(f"give {option} or --config (whose results_dir sets the default {default!r})")


def cmd_aggregate(args: argparse.Namespace) -> int:
    from analysis.aggregate import aggregate, write_summary

    config, settings = _load(args)
    if getattr(args, "include_incomplete", False):
        settings = dataclasses.replace(settings, include_incomplete=True)
    runs_dir = _path(args.runs_dir, config, RUNS_SUBDIR, "--runs-dir")
    out_dir = _path(args.out_dir, config, "summary", "--out-dir")
    summary = aggregate(runs_dir, config, settings)
    for path in write_summary(summary, out_dir).values():
        log.info("wrote %s", path)
    if not args.no_stats:
        _write_stats(summary.scores, out_dir, settings)
    return 0


def cmd_check_runs(args: argparse.Namespace) -> int:
    import pandas as pd

    from analysis.io import write_csv
    from analysis.run_checks import check_results, check_rows, check_runs

    config, _ = _load(args)
    if config is None:
        raise CalqlError("check-runs needs --config (its tasks set each run's episode cap and conventions)")
    results = _path(args.results_dir, config, "", "--results-dir")
    out = _path(args.out, config, "summary/run_checks.csv", "--out")
    write_csv(pd.DataFrame(check_rows(check_runs(results, config))), out)
    log.info("wrote %s", out)
    problems = check_results(results, config)
    for line in problems:
        log.error("%s", line)
    if problems:
        log.error("%d check(s) failed (details in %s)", len(problems), out)
        return 1
    log.info("every run phase passed its checks")
    return 0


def _write_stats(scores: Any, summary: Path, settings: Any) -> None:
    from analysis.io import write_csv
    from analysis.stats import aggregate_stats, per_task_stats

    write_csv(per_task_stats(scores, settings.ci), summary / "per_task.csv")
    write_csv(aggregate_stats(scores, settings.n_bootstrap, settings.ci, settings.seed), summary / "aggregate.csv")
    log.info("wrote %s and %s", summary / "per_task.csv", summary / "aggregate.csv")


def cmd_stats(args: argparse.Namespace) -> int:
    from analysis.io import read_table
    from analysis.stats import METRICS

    config, settings = _load(args)
    summary = _path(args.summary_dir, config, "summary", "--summary-dir")
    _write_stats(read_table(summary / "scores.csv", ["task", "method", "seed", *METRICS]), summary, settings)
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from analysis.io import read_table
    from analysis.plots import Tables, make_figures

    config, settings = _load(args)
    summary = _path(args.summary_dir, config, "summary", "--summary-dir")
    out_dir = _path(args.out_dir, config, "figures", "--out-dir")
    tables = Tables(
        curves=read_table(summary / "curves.csv", ["task", "method", "seed", "phase", "env_steps", "score"]),
        scores=read_table(summary / "scores.csv", ["task", "method", "seed", "offline_score"]),
        per_task=read_table(summary / "per_task.csv", ["task", "method", "metric", "mean"]),
        aggregate=read_table(summary / "aggregate.csv", ["method", "metric", "estimator", "value"]),
    )
    for path in make_figures(tables, out_dir, settings, args.figure):
        log.info("wrote %s", path)
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from analysis.io import read_table
    from analysis.partial import partial_note
    from analysis.tables import write_tables

    config, settings = _load(args)
    summary = _path(args.summary_dir, config, "summary", "--summary-dir")
    out_dir = Path(args.out_dir) if args.out_dir else summary / "tables"
    per_task = read_table(summary / "per_task.csv", ["task", "method", "metric", "n_seeds", "mean", "se"])
    aggregate = read_table(summary / "aggregate.csv", ["method", "metric", "estimator", "value"])
    partial = partial_note(read_table(summary / "scores.csv", ["task", "method", "seed", "status"]))
    for path in write_tables(per_task, aggregate, out_dir, settings.ci, partial):
        log.info("wrote %s", path)
    return 0


def cmd_paired(args: argparse.Namespace) -> int:
    from analysis.io import read_table, write_csv
    from analysis.paired import paired_differences, paired_markdown
    from analysis.palette import method_label
    from calql.atomic import write_text

    config, settings = _load(args)
    summary = _path(args.summary_dir, config, "summary", "--summary-dir")
    scores = read_table(summary / "scores.csv", required=["task", "method", "seed"])
    for method in (args.a, args.b):
        if method not in set(scores["method"]):
            raise CalqlError(f"--a/--b: method {method!r} has no run in {summary / 'scores.csv'}")
    paired = paired_differences(scores, args.a, args.b, ci=settings.ci)
    out = summary / f"paired_{args.b}_minus_{args.a}.csv"
    write_csv(paired, out)
    table = summary / "tables" / f"paired_{args.b}_minus_{args.a}.md"
    write_text(table, paired_markdown(paired, {m: method_label(m) for m in (args.a, args.b)}, settings.ci))
    log.info("wrote %s and %s", out, table)
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    results = Path(args.results_dir) if args.results_dir else None
    if results is None and config is not None:
        results = Path(config["results_dir"])
    if results is None:
        raise CalqlError("give --results-dir or --config")
    summary = str(results / "summary")
    common = {"config": args.config, "summary_dir": summary}
    steps = [
        (
            cmd_aggregate,
            {
                "runs_dir": args.runs_dir or runs_dir_of(results),
                "out_dir": summary,
                "no_stats": False,
                "include_incomplete": args.include_incomplete,
            },
        ),
        (cmd_tables, {"out_dir": None}),
        (cmd_figures, {"out_dir": str(results / "figures"), "figure": None}),
    ]
    for func, extra in steps:
        func(argparse.Namespace(**common, **extra))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from analysis.plots import FIGURES

    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description=(
            "Results stage of calql-repro: aggregate run files into tidy tables, compute "
            "mean +- SE and IQM with stratified-bootstrap CIs, draw figures and write tables. "
            "With --config, paths default to its results_dir (R) and settings come from its "
            "`analysis` section; without it, give the paths."
        ),
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Any, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--config", help="experiment config (YAML); sets expected runs, paths and settings")
        p.set_defaults(func=func)
        return p

    p = add(
        "aggregate",
        cmd_aggregate,
        "Read R/runs/<task>/<method>/seed<S>/{pretrain,finetune}/metrics.csv and write "
        "summary/curves.csv, scores.csv and missing.csv, then (as `stats` does) per_task.csv and "
        "aggregate.csv. With --config the expected runs are tasks x methods x seeds (no pretrain "
        "phase for methods that do not pre-train); without it, every task x method x seed found under --runs-dir.",
    )
    p.add_argument("--runs-dir", help="runs folder (default R/runs)")
    p.add_argument("--out-dir", help="summary folder (default R/summary)")
    p.add_argument("--no-stats", action="store_true", help="skip per_task.csv and aggregate.csv")
    p.add_argument(
        "--include-incomplete",
        action="store_true",
        help="also use phases still running (as analysis.include_incomplete: true), e.g. to monitor",
    )

    p = add(
        "stats",
        cmd_stats,
        "From summary/scores.csv write summary/per_task.csv (mean, SE, t-interval over seeds per "
        "task x method x metric) and summary/aggregate.csv (IQM and mean across tasks and seeds "
        "with stratified-bootstrap CIs per method x metric).",
    )
    p.add_argument("--summary-dir", help="summary folder (default R/summary)")

    p = add(
        "figures",
        cmd_figures,
        "From summary/{curves,scores,per_task,aggregate}.csv draw "
        + ", ".join(FIGURES)
        + " as <out-dir>/<name>.<fmt> (formats from analysis.formats).",
    )
    p.add_argument("--summary-dir", help="summary folder (default R/summary)")
    p.add_argument("--out-dir", help="figures folder (default R/figures)")
    p.add_argument(
        "--figure",
        action="append",
        choices=list(FIGURES),
        help="draw only this figure (repeatable; default: all)",
    )

    p = add(
        "tables",
        cmd_tables,
        "From summary/{per_task,aggregate}.csv write Markdown and LaTeX tables {scores,offline,regret,dip}.{md,tex}.",
    )
    p.add_argument("--summary-dir", help="summary folder (default R/summary)")
    p.add_argument("--out-dir", help="tables folder (default <summary-dir>/tables)")

    p = add(
        "check-runs",
        cmd_check_runs,
        "Check every expected run's files against its domain's conventions (episode lengths within "
        "the cap, episodes ending at success where the domain ends them there, Kitchen episodes "
        "running to the cap, scores in [0, 100], gradient steps made, a conventions table per "
        "task); write one row per run phase to R/summary/run_checks.csv; exit 1 on any failure.",
    )
    p.add_argument("--results-dir", help="results folder R (default: the config's results_dir)")
    p.add_argument("--out", help="CSV to write (default R/summary/run_checks.csv)")

    p = add(
        "paired",
        cmd_paired,
        "From summary/scores.csv write summary/paired_<B>_minus_<A>.csv and tables/paired_<B>_minus_<A>.md: "
        "per task and metric, method B minus method A paired by seed (complete runs of both), with a "
        "Student-t interval and a percentile bootstrap over seeds.",
    )
    p.add_argument("--summary-dir", help="summary folder (default R/summary)")
    p.add_argument("--a", default="calql", help="method A (default calql)")
    p.add_argument("--b", default="cql", help="method B (default cql)")

    p = add("all", cmd_all, "Run aggregate (with stats), tables and figures in order (for use by hand).")
    p.add_argument("--results-dir", help="results folder R (default: the config's results_dir)")
    p.add_argument("--runs-dir", help="runs folder (default R/runs)")
    p.add_argument("--include-incomplete", action="store_true", help="also use phases still running")
    return parser


def main(argv: list[str] | None = None) -> int:
    from calql.cli import run_parsed

    return run_parsed(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
