"""How many training jobs a machine should run at once: update throughput with k concurrent jobs.

Snakemake's `--cores N` lets N one-thread jobs run at once, even where the machine has fewer CPUs.
This starts k processes (k = 1, 2, 4, 8 by default) that each run the same Cal-QL update loop
(the default task's sizes: [64, 64] networks, batch 256, obs 4, act 2, one torch thread) at the same
moment, and reports the machine's total updates/s and each process's CPU ms per update. If the
total stops growing at k = CPUs while the CPU cost per update grows beyond it, running more jobs
than CPUs only wastes CPU time (context switches, caches shared between the jobs).

    .venv/bin/python benchmarks/bench_concurrency.py                 # k = 1 2 4 8
    .venv/bin/python benchmarks/bench_concurrency.py --jobs 1 2 --steps 300

Writes benchmarks/results_concurrency.json atomically and prints a table. Run it on a quiet
machine: other processes count as extra jobs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_update import SIZES, make_batch  # noqa: E402

from calql.agents import make_agent  # noqa: E402
from calql.atomic import write_json  # noqa: E402
from calql.training.process import configure_cpu_allocator  # noqa: E402


def _worker(method: str, args: dict[str, Any], start: Any, out: Any) -> None:
    torch.set_num_threads(1)
    configure_cpu_allocator()  # as a training job does (calql.training.process)
    torch.manual_seed(0)
    hparams = SIZES["small"][method]
    agent = make_agent(method, args["obs_dim"], args["act_dim"], hparams, torch.device("cpu"))
    batch = make_batch(args["batch"], args["obs_dim"], args["act_dim"], torch.device("cpu"))
    for _ in range(args["warmup"]):
        agent.update(batch)
    start.wait()  # every process times the same window
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args["steps"]):
        agent.update(batch)
    out.put({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0})


def run_level(method: str, k: int, args: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(k + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(method, args, start, out)) for _ in range(k)]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    results = [out.get() for _ in range(k)]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    steps = args["steps"]
    return {
        "method": method,
        "jobs": k,
        "steps_per_job": steps,
        "total_updates_per_s": round(k * steps / wall, 1),
        "wall_ms_per_update_per_job": round(statistics.median(r["wall_s"] for r in results) / steps * 1e3, 2),
        "cpu_ms_per_update": round(statistics.median(r["cpu_s"] for r in results) / steps * 1e3, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--methods", nargs="+", default=["calql"], choices=sorted(SIZES["small"]))
    parser.add_argument("--steps", type=int, default=400, help="timed updates per job")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--obs-dim", type=int, default=4)
    parser.add_argument("--act-dim", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results_concurrency.json")
    ns = parser.parse_args(argv)
    args = {"steps": ns.steps, "warmup": ns.warmup, "batch": ns.batch, "obs_dim": ns.obs_dim, "act_dim": ns.act_dim}
    rows = [run_level(m, k, args) for m in ns.methods for k in ns.jobs]
    meta = {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "loadavg_after": list(os.getloadavg()),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **args,
    }
    write_json(ns.out, {"meta": meta, "rows": rows})
    print("| method | concurrent jobs | total updates/s | wall ms/update per job | CPU ms/update |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['jobs']} | {r['total_updates_per_s']} | {r['wall_ms_per_update_per_job']} "
            f"| {r['cpu_ms_per_update']} |"
        )
    print(f"\nwrote {ns.out} ({meta['cpus']} CPUs, load after {meta['loadavg_after'][0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
