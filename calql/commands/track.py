"""``calql track``: import finished runs' files into the MLflow store (one local process)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from calql.atomic import write_json
from calql.config import load_config

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track",
        help="import finished runs into MLflow",
        description=(
            "Read every completed RUN/<phase>/{run.json,metrics.csv} under --runs-dir and create one "
            "MLflow run per (task, method, seed) with both phases: metrics pretrain/... (step = "
            "gradient step) and finetune/... (step = env step), tags, resolved hyperparameters as "
            "params, and the metrics, run records and final checkpoints as artifacts. Runs already "
            "imported with unchanged files are skipped, changed ones replaced: rerunning never "
            "duplicates. Only this one process writes the store."
        ),
        epilog="example: calql track --config config/config.yaml --runs-dir results/runs "
        "(then: mlflow ui --backend-store-uri sqlite:///results/mlflow/mlflow.db)",
    )
    p.add_argument("--config", required=True, type=Path, help="experiment config YAML")
    p.add_argument("--runs-dir", required=True, type=Path, help="folder holding <task>/<method>/seed<S>/ runs")
    p.add_argument(
        "--uri",
        default=None,
        help="MLflow tracking URI (default: tracking.uri, else sqlite:///<results_dir>/mlflow/mlflow.db)",
    )
    p.add_argument(
        "--summary",
        type=Path,
        default=None,
        help="also write a JSON summary of what was imported (atomic; a workflow target)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calql.tracking.mlflow_sync import import_runs
    from calql.tracking.store import default_uri

    config = load_config(args.config)
    uri = args.uri or default_uri(config)
    summary = import_runs(config, args.runs_dir, uri, log_checkpoints=config["tracking"]["log_checkpoints"])
    log.info(
        "MLflow %s, experiment '%s': %d imported (%d replaced), %d unchanged",
        uri,
        config["experiment"],
        len(summary["imported"]),
        len(summary["replaced"]),
        len(summary["unchanged"]),
    )
    if args.summary is not None:
        write_json(args.summary, summary)
    return 0
