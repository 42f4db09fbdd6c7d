"""Throughput of evaluation: env steps per second, episodes one at a time vs stepped together.

An evaluation runs ``eval_episodes`` deterministic episodes (``calql.training.evaluation.evaluate``).
One at a time, every env step costs one policy call of one observation, and on a CPU that call
(torch dispatch of a small MLP) costs more than the MuJoCo step itself; stepped together, the
running episodes share one call per step. This times the real ``evaluate`` on the default config's
task and agent (``config/config.yaml``: PointMaze Medium, 600-step cap, the pointmaze preset's
Cal-QL policy, untrained: every episode runs to the cap, as a failing policy's do), with
``--batches`` episodes per policy call, and reports env steps/s of wall and of process CPU time.

With ``--runs DIR`` it also reads the evaluation rows of the finished runs under DIR (their
``eval/episode_length_mean`` x ``eval_episodes``) and turns the two rates into seconds of
evaluation per fine-tuning job, one at a time vs together. Writes benchmarks/results_eval.json.

    .venv/bin/python benchmarks/bench_eval.py
    .venv/bin/python benchmarks/bench_eval.py --runs results/runs --repeats 5
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from calql.agents import make_agent
from calql.atomic import write_json
from calql.config import get_task, load_config
from calql.envs.make import make_env
from calql.run_files import METRICS_CSV, PHASES, RUN_JSON, RunKey, read_metrics
from calql.training.evaluation import EVAL_BATCH, EvalEnvs, ScoreSpec, evaluate
from calql.training.resolve import resolve_run_config, run_algorithm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' shared helpers
from machine import machine_meta  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def time_evaluation(envs: EvalEnvs, agent: Any, episodes: int, batch: int, index: int) -> dict[str, float]:
    """One evaluation of ``episodes`` episodes, ``batch`` per policy call (environments already made)."""
    wall, cpu = time.perf_counter(), time.process_time()
    row = evaluate(envs, agent, episodes, 0, "bench", index, ScoreSpec("success", 0.0, 1.0), torch.device("cpu"), batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    steps = row["eval/episode_length_mean"] * episodes
    return {"env_steps_per_s": steps / wall, "cpu_env_steps_per_s": steps / cpu, "env_steps": steps}


def eval_steps_per_job(runs: Path) -> dict[str, list[float]]:
    """Evaluation env steps of each finished job under ``runs``, by phase (from its metrics.csv
    and the ``eval_episodes`` its run.json records)."""
    out: dict[str, list[float]] = {}
    for key in RunKey.existing(runs):
        for phase in PHASES:
            folder = key.dir(runs) / phase
            if not (folder / RUN_JSON).exists():
                continue
            episodes = json.loads((folder / RUN_JSON).read_text())["config"][phase]["eval_episodes"]
            lengths = [row["eval/episode_length_mean"] for row in read_metrics(folder / METRICS_CSV)]
            out.setdefault(phase, []).append(sum(length * episodes for length in lengths if length is not None))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    p.add_argument("--task", default="pointmaze-medium")
    p.add_argument("--method", default="calql")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--batches", type=int, nargs="+", default=[1, EVAL_BATCH])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--runs", type=Path, default=None, help="finished runs whose evaluation cost to estimate")
    p.add_argument("--out", default=str(Path(__file__).with_name("results_eval.json")))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)

    config = load_config(args.config)
    task = get_task(config, args.task)
    run = resolve_run_config(config, args.task, args.method)
    probe = make_env(task)
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    torch.manual_seed(0)
    agent = make_agent(run_algorithm(run), obs_dim, act_dim, run["agent"])

    rows = []
    for batch in args.batches:
        envs = EvalEnvs(lambda: make_env(task))
        made = time.perf_counter()
        envs.take(min(batch, args.episodes))
        make_s = time.perf_counter() - made
        times = [time_evaluation(envs, agent, args.episodes, batch, rep) for rep in range(args.repeats)]
        envs.close()
        row = {
            "batch": batch,
            "env_steps_per_s": round(statistics.median(t["env_steps_per_s"] for t in times), 1),
            "cpu_env_steps_per_s": round(statistics.median(t["cpu_env_steps_per_s"] for t in times), 1),
            "all": [round(t["env_steps_per_s"], 1) for t in times],
            "env_steps_per_evaluation": times[0]["env_steps"],
            "make_envs_s": round(make_s, 3),
        }
        rows.append(row)
        print(
            f"batch {batch:3d}: {row['env_steps_per_s']:8.1f} env steps/s ({row['cpu_env_steps_per_s']:.1f} per CPU-s)"
        )

    jobs: dict[str, Any] = {}
    if args.runs is not None:
        for phase, steps in eval_steps_per_job(args.runs).items():
            mean = statistics.mean(steps)
            entry: dict[str, Any] = {"jobs": len(steps), "eval_env_steps_per_job": round(mean)}
            for row in rows:
                entry[f"eval_cpu_s_per_job_batch{row['batch']}"] = round(mean / row["cpu_env_steps_per_s"], 1)
            jobs[phase] = entry
            print(f"{phase}: {entry}")
    meta = machine_meta(
        threads=1,
        task=f"{task.env_id} (cap {task.max_episode_steps}), {args.method} policy of the {run['preset']} preset, untrained",
        episodes=args.episodes,
        repeats=args.repeats,
    )
    write_json(
        args.out, {"meta": meta, "results": rows, "runs": str(args.runs) if args.runs else None, "per_job": jobs}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
