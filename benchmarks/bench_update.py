"""Gradient-update speed of every method: median ms per update (and updates/s).

Sizes: `paper` (AntMaze official: critic [256]x4, actor [256]x2; IQL [256]x2) and `small`
([64, 64] everywhere); batch 256, obs 29, act 8 (AntMaze), N = 10 sampled actions; threads
1 and 2. Each (method, size, threads) cell warms up, then times `--repeats` blocks of
`--steps` updates and reports the median block time per update (robust to other jobs on a
shared machine). Writes benchmarks/results.json atomically and prints a table.

    .venv/bin/python benchmarks/bench_update.py                 # everything
    .venv/bin/python benchmarks/bench_update.py --methods calql --sizes small --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from calql.agents import METHODS, make_agent
from calql.atomic import write_json
from calql.training.process import configure_cpu_allocator

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "sac": {"policy_hidden": [256, 256], "critic_hidden": [256, 256, 256, 256]},
        "cql": {
            "policy_hidden": [256, 256],
            "critic_hidden": [256, 256, 256, 256],
            "cql_lagrange": True,
            "cql_target_action_gap": 0.8,
        },
        "calql": {
            "policy_hidden": [256, 256],
            "critic_hidden": [256, 256, 256, 256],
            "cql_lagrange": True,
            "cql_target_action_gap": 0.8,
        },
        "iql": {"hidden": [256, 256]},
        # AWAC-F (docs/method.md#baseline-hyperparameters): actor and critics 4 x 256.
        "awac": {"actor_hidden": [256] * 4, "critic_hidden": [256] * 4},
        # RLPD AntMaze command (RLPD-F): actor 3 x 256, 10 LayerNorm critics of 3 x 256.
        "rlpd": {"actor_hidden": [256] * 3, "critic_hidden": [256] * 3},
    },
    "small": {
        "sac": {"policy_hidden": [64, 64], "critic_hidden": [64, 64]},
        "cql": {"policy_hidden": [64, 64], "critic_hidden": [64, 64], "cql_lagrange": True},
        "calql": {"policy_hidden": [64, 64], "critic_hidden": [64, 64], "cql_lagrange": True},
        "iql": {"hidden": [64, 64]},
        "awac": {"actor_hidden": [64, 64], "critic_hidden": [64, 64]},
        "rlpd": {"actor_hidden": [64, 64], "critic_hidden": [64, 64]},
    },
}


def make_batch(batch: int, obs_dim: int, act_dim: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    b = {
        "observations": torch.randn(batch, obs_dim, generator=g),
        "actions": torch.rand(batch, act_dim, generator=g) * 2 - 1,
        "rewards": torch.randn(batch, generator=g),
        "next_observations": torch.randn(batch, obs_dim, generator=g),
        "dones": (torch.rand(batch, generator=g) < 0.05).float(),
        "mc_returns": torch.randn(batch, generator=g) * 10,
    }
    return {k: v.to(device) for k, v in b.items()}


def time_cell(method: str, hparams: dict[str, Any], threads: int, args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cpu":
        configure_cpu_allocator()  # as a training job does (calql.training.process)
    agent = make_agent(method, args.obs_dim, args.act_dim, hparams, device)
    batch = make_batch(args.batch, args.obs_dim, args.act_dim, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        agent.update(batch)
    sync()
    blocks, cpu_blocks = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            agent.update(batch)
        sync()
        blocks.append((time.perf_counter() - t0) / args.steps * 1000.0)
        cpu_blocks.append((time.process_time() - c0) / args.steps * 1000.0)
    med = statistics.median(blocks)
    return {
        "method": method,
        "threads": threads,
        "ms_median": round(med, 2),
        "ms_min": round(min(blocks), 2),
        "ms_max": round(max(blocks), 2),
        "updates_per_s": round(1000.0 / med, 1),
        # CPU time of this process per update: with 1 thread it excludes time the process waited
        # for a core held by other jobs, so it is the better number on a shared machine.
        "cpu_ms_median": round(statistics.median(cpu_blocks), 2),
        "hparams": hparams,
    }


def _loadavg() -> list[float] | None:
    """System load (1/5/15 min): other jobs on the machine make the timings slower and noisier."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_busy(interval: float = 2.0) -> float | None:
    """Fraction of all CPU time used by other processes over ``interval`` s (we sleep meanwhile)."""

    def read() -> tuple[int, int]:
        vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals), idle

    try:
        t0, i0 = read()
        time.sleep(interval)
        t1, i1 = read()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def _wait_quiet(threshold: float, max_wait: float) -> float | None:
    """Wait until other processes use less than ``threshold`` of the CPUs (or ``max_wait`` passed);
    return the last measured busy fraction."""
    deadline = time.monotonic() + max_wait
    busy = _cpu_busy()
    while busy is not None and busy >= threshold and time.monotonic() < deadline:
        busy = _cpu_busy()
    return busy


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Every algorithm with its own update (Hybrid RL is the `sac` agent on other batches).
    benchmarked = [m for m in METHODS if m in SIZES["small"]]
    p.add_argument("--methods", nargs="+", default=benchmarked, choices=benchmarked)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--obs-dim", type=int, default=29)
    p.add_argument("--act-dim", type=int, default=8)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="updates per timed block")
    p.add_argument("--repeats", type=int, default=7, help="timed blocks; the median is reported")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        metavar="FRACTION",
        help="before each cell wait until other processes use < FRACTION of the CPUs (shared machines)",
    )
    p.add_argument("--wait-max", type=float, default=300.0, help="longest wait per cell for --wait-quiet (s)")
    p.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = p.parse_args(argv)

    load_start = _loadavg()
    rows = []
    for size in args.sizes:
        for method in args.methods:
            for threads in args.threads:
                busy = _wait_quiet(args.wait_quiet, args.wait_max) if args.wait_quiet else _cpu_busy()
                row = time_cell(method, SIZES[size][method], threads, args)
                row["other_cpu_busy_before"] = None if busy is None else round(busy, 2)
                load = _loadavg()
                row.update(size=size, loadavg_1min=load[0] if load else None)
                rows.append(row)
                print(
                    f"{size:6s} {method:6s} threads={threads}  median {row['ms_median']:8.2f} ms/update "
                    f"(min {row['ms_min']:.2f}, max {row['ms_max']:.2f}, cpu {row['cpu_ms_median']:.2f})  "
                    f"{row['updates_per_s']:8.1f} updates/s  others' CPU {row['other_cpu_busy_before']}, "
                    f"load {row['loadavg_1min']}",
                    flush=True,
                )
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg_at_start": load_start,
        "loadavg_at_end": _loadavg(),
        "device": args.device,
        "batch": args.batch,
        "obs_dim": args.obs_dim,
        "act_dim": args.act_dim,
        "n_actions": 10,
        "warmup": args.warmup,
        "steps_per_block": args.steps,
        "repeats": args.repeats,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(args.out, {"meta": meta, "results": rows})
    print(
        "\n| size | method | threads | median ms/update | min ms | CPU ms/update | updates/s "
        "| others' CPU use before | load (1 min) after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']} | {r['method']} | {r['threads']} | {r['ms_median']:.1f} | {r['ms_min']:.1f} "
            f"| {r['cpu_ms_median']:.1f} | {r['updates_per_s']:.0f} | {r['other_cpu_busy_before']} "
            f"| {r['loadavg_1min']} |"
        )
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
