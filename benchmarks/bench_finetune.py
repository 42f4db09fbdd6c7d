"""Throughput of the whole fine-tuning loop: online env steps per second, per method.

Runs the real ``run_finetune`` (stochastic episode, MC labeling, buffer, episode-length x UTD
gradient steps on mixed batches) on a generated PointMaze UMaze dataset with the pointmaze preset
([64, 64] networks, batch 256), and reads ``perf/env_steps_per_s`` of the final metrics row: env
steps per second of loop time, evaluation excluded. A ``rollout`` cell (UTD ~ 0: no gradient
steps) shows what the environment and acting alone cost. Each cell runs ``--repeats`` times in
fresh run folders; the median is reported. Writes benchmarks/results_finetune.json atomically.

    .venv/bin/python benchmarks/bench_finetune.py
    .venv/bin/python benchmarks/bench_finetune.py --methods calql --env-steps 2000 --threads 1 2
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from calql.atomic import write_json
from calql.config import get_task, validate_config
from calql.data.format import save_dataset
from calql.data.label import label_dataset
from calql.data.sources import fetch_dataset
from calql.run_files.metrics_csv import read_metrics
from calql.training.finetune import run_finetune
from calql.training.pretrain import run_pretrain
from calql.training.run_spec import RunSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' shared helpers
from machine import machine_meta  # noqa: E402

TASK: dict[str, Any] = {
    "domain": "pointmaze",
    "env": {
        "id": "PointMaze_UMaze-v3",
        "obs_keys": ["observation"],
        "eval_reset": {"reset_cell": [3, 1], "goal_cell": [1, 1]},
        "max_episode_steps": 300,
    },
    "source": {"kind": "generated", "n_transitions": 20000, "segment_length": 500, "seed": 0},
    "reward": {"scale": 10.0, "bias": -5.0, "sparse": True, "negative_reward": 0.0},
}


def make_config(root: Path, env_steps: int, threads: int, device: str, utd: float) -> dict[str, Any]:
    config = {
        "experiment": "bench",
        "results_dir": str(root),
        "tasks": {"umaze": copy.deepcopy(TASK)},
        "train": {
            "device": device,
            "threads": threads,
            "pretrain": {"steps": 1, "eval_every": 1, "eval_episodes": 1},
            "finetune": {
                "env_steps": env_steps,
                "eval_every_env_steps": 10 * env_steps,
                "eval_episodes": 1,
                "utd_ratio": utd,
                "checkpoint_every_env_steps": 10 * env_steps,
                "checkpoint_minutes": 1e6,
            },
        },
    }
    return validate_config(config)


def time_cell(
    root: Path, dataset: Path, method: str, threads: int, args: argparse.Namespace, rollout_only: bool, rep: int
) -> float:
    utd = 1e-9 if rollout_only else 1.0
    config = make_config(root, args.env_steps, threads, args.device, utd)
    run_dir = root / f"{method}-{threads}-{int(rollout_only)}-{rep}"
    if method != "sac":
        run_pretrain(RunSpec.from_config(config, "umaze", method), rep, dataset, run_dir, progress=False)
    run_finetune(RunSpec.from_config(config, "umaze", method), rep, dataset, run_dir, progress=False)
    return float(read_metrics(run_dir / "finetune" / "metrics.csv")[-1]["perf/env_steps_per_s"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--methods", nargs="+", default=["calql", "cql", "iql", "sac"], choices=["calql", "cql", "iql", "sac"]
    )
    p.add_argument("--threads", nargs="+", type=int, default=[1])
    p.add_argument("--env-steps", type=int, default=3000, help="online env steps per timed run")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(Path(__file__).with_name("results_finetune.json")))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_finetune_") as tmp:
        root = Path(tmp)
        config = make_config(root, args.env_steps, 1, args.device, 1.0)
        task = get_task(config, "umaze")
        dataset = root / "labeled.hdf5"
        save_dataset(label_dataset(fetch_dataset(task, root / "cache"), task, progress=False), dataset)
        cells = [(m, t, False) for m in args.methods for t in args.threads] + [("sac", args.threads[0], True)]
        for method, threads, rollout_only in cells:
            values = [time_cell(root, dataset, method, threads, args, rollout_only, rep) for rep in range(args.repeats)]
            med = statistics.median(values)
            name = "rollout" if rollout_only else method
            rows.append(
                {
                    "cell": name,
                    "threads": threads,
                    "env_steps_per_s": round(med, 1),
                    "all": [round(v, 1) for v in values],
                    "utd": 0.0 if rollout_only else 1.0,
                }
            )
            print(f"{name:8s} threads={threads}  {med:8.1f} env steps/s (UTD {rows[-1]['utd']})", flush=True)
    meta = machine_meta(
        device=args.device,
        env_steps=args.env_steps,
        repeats=args.repeats,
        task="PointMaze_UMaze-v3, pointmaze preset ([64,64], batch 256)",
    )
    write_json(args.out, {"meta": meta, "results": rows})
    print("\n| cell | threads | env steps/s |\n|---|---|---|")
    for r in rows:
        print(f"| {r['cell']} | {r['threads']} | {r['env_steps_per_s']:.0f} |")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
