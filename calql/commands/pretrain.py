"""``calql pretrain``: offline pre-training of one (task, method, seed) on the labeled dataset."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calql.commands.common import add_config_args
from calql.config import load_config
from calql.errors import UsageError
from calql.training.run_spec import RunSpec, live_tracking_settings, parse_live_tracking

log = logging.getLogger(__name__)


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``pretrain`` and ``finetune``."""
    source = p.add_argument_group(
        "the run", "either --run-config (what the workflow passes) or --config, --task and --method (by hand)"
    )
    source.add_argument(
        "--run-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="this phase's resolved run config, as the workflow writes it "
        "(results/configs/runs/<task>/<method>/<phase>.json); read as it is, nothing resolved again",
    )
    source.add_argument(
        "--live-tracking",
        default=None,
        metavar="JSON",
        help='with --run-config: MLflow live-logging settings ({"experiment", "results_dir", "tracking"}); '
        "the workflow passes them when tracking.live is on",
    )
    add_config_args(source, required=False)
    source.add_argument(
        "--method",
        default=None,
        help="with --config: a method of the config's `methods` (a registered algorithm or a named variant)",
    )
    p.add_argument("--seed", required=True, type=int, help="run seed (network init, sampling, episodes)")
    p.add_argument("--dataset", required=True, type=Path, help="labeled dataset from `calql label`")
    p.add_argument(
        "--run-dir",
        required=True,
        type=Path,
        help="run folder RUN (e.g. results/runs/<task>/<method>/seed<seed>); the phase writes RUN/<phase>/",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="delete this phase's previous outputs and checkpoints and start over (default: resume)",
    )
    p.add_argument(
        "--lock-wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="only one process trains a run: wait at most this long for another one holding "
        "RUN/.lock, then fail naming its PID (default: wait until it exits)",
    )


def run_spec_of(args: argparse.Namespace, phase: str) -> tuple[RunSpec, dict[str, Any]]:
    """The run to train and the live-tracking settings (``live_logger``'s config): read from
    --run-config (and --live-tracking), or resolved (once) from --config/--task/--method."""
    by_hand = {"--config": args.config, "--task": args.task, "--method": args.method}
    if args.run_config is not None:
        given = [name for name, value in by_hand.items() if value is not None]
        if given:
            raise UsageError(f"--run-config holds the whole run: drop {', '.join(given)}")
        tracking = parse_live_tracking(args.live_tracking) if args.live_tracking else {}
        return RunSpec.read(args.run_config, phase), tracking
    missing = [name for name, value in by_hand.items() if value is None]
    if missing:
        raise UsageError(f"give --run-config FILE, or --config, --task and --method (missing: {', '.join(missing)})")
    if args.live_tracking:
        raise UsageError("--live-tracking goes with --run-config; with --config the config's `tracking` applies")
    config = load_config(args.config)
    return RunSpec.from_config(config, args.task, args.method), live_tracking_settings(config) or {}


def run_phase(args: argparse.Namespace, phase: str, train: Callable[..., Path], **kwargs: Any) -> int:
    """Get the run, open live tracking if asked, run the phase, close tracking."""
    from calql.tracking.mlflow_live import live_logger
    from calql.training.guard import failure_record, run_lock
    from calql.training.signals import install_sigterm_handler

    spec, tracking = run_spec_of(args, phase)
    install_sigterm_handler()
    # One writer per run for this process's lifetime; a failure leaves RUN/<phase>/error.json.
    with run_lock(args.run_dir, phase, wait=args.lock_wait), failure_record(args.run_dir / phase):
        live = live_logger(tracking, spec.run, phase, args.seed)
        ok = False
        try:
            out = train(
                spec,
                args.seed,
                args.dataset,
                args.run_dir,
                live=live,
                restart=args.restart,
                progress=not getattr(args, "quiet", False),
                **kwargs,
            )
            ok = True
        finally:
            if live is not None:
                live.finish(ok)
    log.info("%s outputs in %s", phase, out)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="offline pre-training on a labeled dataset",
        description=(
            "Pre-train one method (calql, cql, iql) offline: gradient steps on uniform batches of "
            "the labeled dataset, with the budgets and hyperparameters resolved from the task's "
            "preset and the config's `train` section. Evaluates at step 0, every eval_every steps "
            "and at the end; writes RUN/pretrain/metrics.csv as it goes, checkpoints to "
            "RUN/pretrain/checkpoints/last.pt (rerunning the same command resumes exactly), and "
            "final.pt + run.json when done."
        ),
        epilog="example: calql pretrain --config config/config.yaml --task pointmaze-medium --method calql "
        "--seed 0 --dataset results/labeled/pointmaze-medium.hdf5 --run-dir results/runs/pointmaze-medium/calql/seed0",
    )
    add_run_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calql.training.pretrain import run_pretrain

    return run_phase(args, "pretrain", run_pretrain)
