"""``calql finetune``: online fine-tuning of one (task, method, seed), from its pre-trained agent."""

from __future__ import annotations

import argparse
from pathlib import Path

from calql.commands.pretrain import add_run_args, run_phase


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="online fine-tuning (from the pre-trained agent; sac from scratch)",
        description=(
            "Fine-tune online as the official Cal-QL loop: one stochastic episode, labeled with "
            "MC returns like the offline data, into a FIFO buffer; then episode-length x UTD "
            "gradient steps on batches mixing offline and online data (mixing_ratio; 0 for SAC from scratch). "
            "Evaluates at env step 0, after each eval_every_env_steps and at the end; writes "
            "RUN/finetune/metrics.csv, checkpoints at episode ends (rerunning resumes exactly), "
            "and final.pt + run.json when done."
        ),
        epilog="example: calql finetune --config config/config.yaml --task pointmaze-medium --method calql "
        "--seed 0 --dataset results/labeled/pointmaze-medium.hdf5 "
        "--run-dir results/runs/pointmaze-medium/calql/seed0 "
        "--init results/runs/pointmaze-medium/calql/seed0/pretrain/final.pt",
    )
    add_run_args(p)
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="pre-trained checkpoint (default RUN/pretrain/final.pt; not allowed for methods without pre-training)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calql.training.finetune import run_finetune

    return run_phase(args, "finetune", run_finetune, init=args.init)
