"""Measured cost plan of config/paper.yaml: seconds per gradient step and per env step, projected job hours.

Why: issue 19 (point 5) says the cost of the paper sweep (10 tasks x 8 methods x 4 seeds x 2
phases) is unknown, and the Slurm ``runtime`` of the pretrain / finetune rules was a guess. This
benchmark measures, on one device, the pieces a job is made of and multiplies them by the budgets
of each resolved run config (``resolve_all``), so every size, batch size, N, ensemble and budget
is exactly the paper's:

- s/gradient step: ``make_agent`` at the resolved hyperparameters and the task's obs/act dims,
  random batches of the resolved batch size (offline phase for pre-training, online phase for
  fine-tuning), warm-up, then the median of ``--repeats`` timed blocks (one distinct measurement per
  distinct (algorithm, hyperparameters, dims, batch, phase); identical cells are shared);
- s/env step: the real online env (``make_env``) driven by ``run_episode`` (the training loop's
  own rollout code) with the reference method's policy, stochastic (training) and deterministic
  (evaluation); each method's own ``act`` cost is measured and swapped in.

Projection per job: pre-training = steps x s/step + evaluations x eval_episodes x max episode
length x s/eval-step (an upper bound: episodes that end early cost less); fine-tuning = env_steps x
s/env-step + (env_steps - random_steps) x utd_ratio x s/update + evaluations likewise. Results go to
benchmarks/results_paper_cost.json under the device's key (a ``--device cuda`` run adds its entry
beside the CPU one) and docs/cost.md is rendered from every entry present.

    .venv/bin/python benchmarks/bench_paper_cost.py                   # CPU, the config's threads
    .venv/bin/python benchmarks/bench_paper_cost.py --device cuda     # on a GPU node
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_update import _cpu_busy, _cpu_model, _loadavg, _wait_quiet, make_batch  # noqa: E402

from calql.agents import Agent, make_agent  # noqa: E402
from calql.atomic import write_json, write_text  # noqa: E402
from calql.config import TaskSpec, get_task, load_config  # noqa: E402
from calql.envs.make import make_env  # noqa: E402
from calql.training.evaluation import run_episode  # noqa: E402
from calql.training.process import configure_cpu_allocator  # noqa: E402
from calql.training.resolve import resolve_all, run_algorithm  # noqa: E402
from calql.training.run_config import RunConfig  # noqa: E402

try:  # the loop's own one-observation action (public name since the evaluation.py rename)
    from calql.training.evaluation import policy_action as _act
except ImportError:  # a checkout from before the rename
    from calql.training.evaluation import _act  # type: ignore[attr-defined,no-redef]

log = logging.getLogger("bench_paper_cost")
ROOT = Path(__file__).resolve().parent.parent
PHASE_OF = {"pretrain": "offline", "finetune": "online"}


@dataclass(frozen=True)
class UpdateCell:
    """One distinct gradient-step measurement: everything the update's cost depends on."""

    algorithm: str
    hparams_json: str
    obs_dim: int
    act_dim: int
    batch_size: int
    phase: str

    @property
    def hparams(self) -> dict[str, Any]:
        return json.loads(self.hparams_json)


class QuietGate:
    """Before each measurement, wait (boundedly) until other processes leave the CPUs mostly idle.

    Why: the VM is shared, and with 2 OpenMP threads a busy partner core makes updates several
    times slower (benchmarks/README.md), so a burst of someone's tests would inflate one cell. The
    total wait is capped so that the benchmark still ends; what others used is recorded per cell.
    """

    def __init__(self, threshold: float | None, max_wait: float, budget: float) -> None:
        self.threshold, self.max_wait, self.budget = threshold, max_wait, budget
        self.waited = 0.0

    def __call__(self) -> float | None:
        """Others' CPU fraction just before the measurement (measured over 2 s)."""
        allowed = min(self.max_wait, self.budget - self.waited)
        if self.threshold is None or allowed <= 0:
            return _cpu_busy()
        t0 = time.monotonic()
        busy = _wait_quiet(self.threshold, allowed)
        self.waited += time.monotonic() - t0
        return busy


def _sync(device: torch.device) -> None:
    """Wait for queued CUDA kernels, so that wall time covers the work and not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_updates(agent: Agent, batch: dict[str, torch.Tensor], n: int, device: torch.device) -> tuple[float, float]:
    """``n`` updates; (wall s, process CPU s) per update."""
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        agent.update(batch)
    _sync(device)
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def time_updates(cell: UpdateCell, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """Median seconds per gradient step of one cell.

    Blocks hold a whole number of ``actor_update_period`` (RLPD steps its actor on every 20th call,
    so a shorter block would miss or over-count actor steps) and last about ``--block-seconds``,
    so that cheap updates are not dominated by timer noise and expensive ones stay few. With one
    torch thread on CPU a block costs its process CPU time when that is below its wall time (as for
    env steps): a single-threaded update's CPU time leaves out the time other jobs held the core,
    which makes ``--threads 1`` the robust choice on a shared machine. With 2 threads it does not
    (an OpenMP thread spinning for its descheduled partner burns CPU time), so wall time is used.
    """
    torch.manual_seed(0)
    agent = make_agent(cell.algorithm, cell.obs_dim, cell.act_dim, cell.hparams, device)
    agent.set_mode(cell.phase)
    batch = make_batch(cell.batch_size, cell.obs_dim, cell.act_dim, device)
    period = int(cell.hparams.get("actor_update_period", 1))
    first, _ = _run_updates(agent, batch, period, device)  # also the first warm-up updates
    per_block = period * max(1, math.ceil(args.block_seconds / (first * period)))
    _run_updates(agent, batch, period * max(1, math.ceil(args.warmup / period)), device)
    walls, cpus, costs = [], [], []
    single = torch.get_num_threads() == 1
    for _ in range(args.repeats):
        wall, cpu = _run_updates(agent, batch, per_block, device)
        walls.append(wall)
        cpus.append(cpu)
        costs.append(_single_thread_seconds(wall, cpu, device) if single else wall)
    load = _loadavg()
    return {
        "algorithm": cell.algorithm,
        "phase": cell.phase,
        "obs_dim": cell.obs_dim,
        "act_dim": cell.act_dim,
        "batch_size": cell.batch_size,
        "s_median": statistics.median(costs),
        "s_min": min(costs),
        "s_max": max(costs),
        "wall_s_median": statistics.median(walls),
        "cpu_s_median": statistics.median(cpus),
        "updates_per_block": per_block,
        "blocks": args.repeats,
        "loadavg_1min": load[0] if load else None,
        "hparams": cell.hparams,
    }


def _single_thread_seconds(wall: float, cpu: float, device: torch.device) -> float:
    """The cost of single-threaded work (mujoco steps, one-observation ``act``): on CPU the process
    CPU time when it is below the wall time, since it leaves out the time spent waiting for a core
    that other jobs held (on a quiet machine the two agree); on cuda the wall time, because waiting
    for the GPU is part of the cost and may not show as CPU time."""
    return wall if device.type == "cuda" else min(wall, cpu)


def time_rollout(task: TaskSpec, agent: Agent, deterministic: bool, device: torch.device, min_steps: int) -> dict:
    """Seconds per env step of whole episodes run by ``run_episode`` (env step + policy action +
    the loop's bookkeeping), as fine-tuning (stochastic) and evaluation (deterministic) run them."""
    env = make_env(task, seed=0)
    try:
        obs, _ = env.reset(seed=0)
        for _ in range(20):  # warm-up: first-call allocations of mujoco and torch
            obs, _, terminated, truncated, _ = env.step(_act(agent, obs, deterministic, device))
            if terminated or truncated:
                obs, _ = env.reset()
        steps, episodes, wall, cpu = 0, 0, 0.0, 0.0
        while steps < min_steps:
            t0, c0 = time.perf_counter(), time.process_time()
            traj = run_episode(env, agent, 1000 + episodes, deterministic, device)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
            steps += len(traj["rewards"])
            episodes += 1
    finally:
        env.close()
    return {
        "s_per_step": _single_thread_seconds(wall, cpu, device) / steps,
        "wall_s_per_step": wall / steps,
        "cpu_s_per_step": cpu / steps,
        "steps": steps,
        "episodes": episodes,
    }


def time_act(agent: Agent, obs: np.ndarray, deterministic: bool, device: torch.device, n: int = 300) -> float:
    """Seconds per single-observation ``act`` call (the policy's share of an env step)."""
    for _ in range(20):
        _act(agent, obs, deterministic, device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        _act(agent, obs, deterministic, device)
    return _single_thread_seconds(time.perf_counter() - t0, time.process_time() - c0, device) / n


def env_group(task: TaskSpec) -> str:
    """Tasks of one env id share the env measurement (kitchen tasks differ only in their sub-tasks)."""
    return task.env_id


def _time_env_group(
    task: TaskSpec,
    agents: dict[str, Agent],
    obs: np.ndarray,
    device: torch.device,
    args: argparse.Namespace,
    gate: QuietGate,
) -> dict[str, Any]:
    """One timing of an env: rollouts with the reference (first) method's policy, every act cost."""
    ref = next(iter(agents))
    group: dict[str, Any] = {"other_cpu_busy_before": gate(), "reference_policy": ref}
    for mode, det in (("train", False), ("eval", True)):
        group[f"rollout_{mode}"] = time_rollout(task, agents[ref], det, device, args.min_env_steps)
        group[f"act_{mode}_s"] = {m: time_act(a, obs, det, device) for m, a in agents.items()}
    load = _loadavg()
    group["loadavg_1min"] = load[0] if load else None
    return group


def measure_envs(
    config: dict[str, Any],
    runs: dict[tuple[str, str], dict],
    device: torch.device,
    args: argparse.Namespace,
    gate: QuietGate,
) -> dict[str, Any]:
    """Per env id: dims, rollout s/step with the reference method's policy, each method's act cost."""
    groups: dict[str, Any] = {}
    tasks = list(dict.fromkeys(t for t, _ in runs))
    methods = list(dict.fromkeys(m for _, m in runs))
    for task_name in tqdm(tasks, desc="envs", file=sys.stderr):
        task = get_task(config, task_name)
        key = env_group(task)
        if key in groups:
            groups[key]["tasks"].append(task_name)
            continue
        env = make_env(task, seed=0)
        obs, _ = env.reset(seed=0)
        obs_dim, act_dim = int(env.observation_space.shape[0]), int(env.action_space.shape[0])
        env.close()
        agents = {}
        for method in methods:
            torch.manual_seed(0)
            run = runs[(task_name, method)]
            agents[method] = make_agent(run_algorithm(run), obs_dim, act_dim, run["agent"], device)
            agents[method].set_mode("online")
        group = _time_env_group(task, agents, obs, device, args, gate)
        for _ in range(args.retries):  # as for gradient steps: re-time a group that began on busy CPUs
            if not _disturbed(group, args):
                break
            again = _time_env_group(task, agents, obs, device, args, gate)
            group = min(group, again, key=lambda g: g["rollout_train"]["s_per_step"])
        group.update(tasks=[task_name], obs_dim=obs_dim, act_dim=act_dim, max_episode_steps=task.max_episode_steps)
        groups[key] = group
        log.info(
            "%s: %.3f ms/env step (train), %.3f ms (eval) with %s's policy",
            key,
            1e3 * group["rollout_train"]["s_per_step"],
            1e3 * group["rollout_eval"]["s_per_step"],
            group["reference_policy"],
        )
    return groups


def env_step_s(group: dict[str, Any], method: str, mode: str) -> float:
    """s/env step of ``method``: the measured rollout with the reference policy, its act cost
    replaced by the method's own (policies differ in size: AWAC 4 x 256, Kitchen SAC 3 x 512...)."""
    ref = group["reference_policy"]
    acts = group[f"act_{mode}_s"]
    return max(0.0, group[f"rollout_{mode}"]["s_per_step"] - acts[ref] + acts[method])


def update_cells(
    config: dict[str, Any], runs: dict[tuple[str, str], dict], groups: dict[str, Any]
) -> dict[tuple[str, str, str], UpdateCell]:
    """(task, method, phase) -> the distinct cell that measures its gradient step."""
    out = {}
    for (task_name, method), run in runs.items():
        group = groups[env_group(get_task(config, task_name))]
        for phase in ("pretrain", "finetune"):
            if run[phase] is None:
                continue
            out[(task_name, method, phase)] = UpdateCell(
                run_algorithm(run),
                json.dumps(run["agent"], sort_keys=True),
                group["obs_dim"],
                group["act_dim"],
                int(run[phase]["batch_size"]),
                PHASE_OF[phase],
            )
    return out


def n_evaluations(total: int, every: int) -> int:
    """Evaluations of a phase: at 0, at each multiple of ``every``, and at the end (pretrain.py /
    finetune.py schedules; fine-tuning evaluates at the first episode end after each multiple)."""
    return total // every + 1 + (1 if total % every else 0)


def project(run: dict[str, Any], group: dict[str, Any], updates: dict[str, float]) -> dict[str, Any]:
    """Projected seconds of one job per phase (see the module docstring for the formula)."""
    method, max_len = run["method"], int(group["max_episode_steps"])
    eval_step = env_step_s(group, method, "eval")
    out: dict[str, Any] = {"task": run["task"], "method": method, "algorithm": run_algorithm(run)}
    pre = run["pretrain"]
    if pre is not None:
        n_eval = n_evaluations(int(pre["steps"]), int(pre["eval_every"]))
        eval_s = n_eval * int(pre["eval_episodes"]) * max_len * eval_step
        out["pretrain"] = {
            "steps": pre["steps"],
            "batch_size": pre["batch_size"],
            "s_per_update": updates["pretrain"],
            "train_s": pre["steps"] * updates["pretrain"],
            "evaluations": n_eval,
            "eval_s": eval_s,
        }
        out["pretrain"]["total_s"] = out["pretrain"]["train_s"] + eval_s
    ft = run["finetune"]
    env_steps, utd = int(ft["env_steps"]), float(ft["utd_ratio"])
    n_updates = max(0, env_steps - int(RunConfig.from_json(run).finetune.random_steps)) * utd
    n_eval = n_evaluations(env_steps, int(ft["eval_every_env_steps"]))
    out["finetune"] = {
        "env_steps": env_steps,
        "utd_ratio": utd,
        "batch_size": ft["batch_size"],
        "updates": n_updates,
        "s_per_update": updates["finetune"],
        "s_per_env_step": env_step_s(group, method, "train"),
        "s_per_eval_step": eval_step,
        "env_s": env_steps * env_step_s(group, method, "train"),
        "update_s": n_updates * updates["finetune"],
        "evaluations": n_eval,
        "eval_s": n_eval * int(ft["eval_episodes"]) * max_len * eval_step,
    }
    f = out["finetune"]
    f["total_s"] = f["env_s"] + f["update_s"] + f["eval_s"]
    return out


def summarize(jobs: list[dict[str, Any]], seeds: int, threads: int, margin: float) -> dict[str, Any]:
    """Totals over the sweep and the proposed Slurm runtime per rule (margin x the worst job,
    rounded up to the hour)."""
    out: dict[str, Any] = {"seeds": seeds, "threads": threads, "margin": margin, "per_method": {}}
    for phase in ("pretrain", "finetune"):
        rows = [j for j in jobs if phase in j]
        hours = sum(j[phase]["total_s"] for j in rows) * seeds / 3600.0
        worst = max(rows, key=lambda j: j[phase]["total_s"])
        worst_h = worst[phase]["total_s"] / 3600.0
        out[phase] = {
            "jobs": len(rows) * seeds,
            "job_hours": hours,
            "core_hours": hours * threads,
            "longest": {"task": worst["task"], "method": worst["method"], "hours": worst_h},
            "runtime_min": int(math.ceil(worst_h * margin)) * 60,
        }
    for j in jobs:
        m = out["per_method"].setdefault(j["method"], {"pretrain_h": 0.0, "finetune_h": 0.0})
        for phase in ("pretrain", "finetune"):
            if phase in j:
                m[f"{phase}_h"] += j[phase]["total_s"] * seeds / 3600.0
    out["job_hours"] = out["pretrain"]["job_hours"] + out["finetune"]["job_hours"]
    out["core_hours"] = out["job_hours"] * threads
    return out


def machine_meta(device: torch.device, threads: int, config_path: str) -> dict[str, Any]:
    """What the numbers depend on besides the code: host, CPU, torch, threads, load."""
    meta: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config_path,
        "device": device.type,
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "node": platform.node(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
    }
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    try:
        import mujoco

        meta["mujoco"] = mujoco.__version__
    except ImportError:
        meta["mujoco"] = None
    return meta


def _timed_cell(cell: UpdateCell, device: torch.device, args: argparse.Namespace, gate: QuietGate) -> dict:
    """One timing of ``cell`` after the quiet gate, with what other processes used just before."""
    busy = gate()
    result = time_updates(cell, device, args)
    result["other_cpu_busy_before"] = busy
    log.info(
        "%s %s obs %d act %d batch %d: %.1f ms/update (min %.1f, max %.1f), others used %s of the CPUs before",
        cell.algorithm,
        cell.phase,
        cell.obs_dim,
        cell.act_dim,
        cell.batch_size,
        1e3 * result["s_median"],
        1e3 * result["s_min"],
        1e3 * result["s_max"],
        _pct(busy),
    )
    return result


def _disturbed(result: dict[str, Any], args: argparse.Namespace) -> bool:
    """A measurement probably slowed by other jobs: started on busy CPUs, or (gradient steps) its
    blocks disagree by more than ``--noisy-spread`` (interference comes and goes; the cost does not)."""
    busy = result.get("other_cpu_busy_before")
    threshold = args.wait_quiet if args.wait_quiet is not None else 0.3
    spread = "s_max" in result and result["s_max"] > args.noisy_spread * result["s_min"]
    return (busy is not None and busy >= threshold) or spread


def measure_updates(
    cells: dict[tuple[str, str, str], UpdateCell], device: torch.device, args: argparse.Namespace, gate: QuietGate
) -> dict[UpdateCell, dict[str, Any]]:
    """Time every distinct cell once (AntMaze medium and large share theirs), then re-time the
    disturbed ones up to ``--retries`` times and keep the attempt with the lowest median: other
    jobs only ever slow an update down, so the lower median is the nearer to a quiet machine's.
    SAC and Hybrid RL are two registered algorithms on one agent, so both are timed: a free
    repeatability check."""
    distinct = list(dict.fromkeys(cells.values()))
    results = {}
    bar = tqdm(distinct, desc="gradient steps", file=sys.stderr)
    for cell in bar:
        bar.set_postfix_str(f"{cell.algorithm} obs {cell.obs_dim} {cell.phase} batch {cell.batch_size}")
        results[cell] = _timed_cell(cell, device, args, gate)
        results[cell]["attempts_s_median"] = [results[cell]["s_median"]]
    for attempt in range(args.retries):
        noisy = [c for c in distinct if _disturbed(results[c], args)]
        for cell in tqdm(noisy, desc=f"re-timing disturbed cells ({attempt + 1}/{args.retries})", file=sys.stderr):
            again = _timed_cell(cell, device, args, gate)
            attempts = results[cell]["attempts_s_median"] + [again["s_median"]]
            results[cell] = min(results[cell], again, key=lambda r: r["s_median"])
            results[cell]["attempts_s_median"] = attempts
    return results


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Measure everything on ``args.device`` and project the sweep; the device's results entry."""
    config = load_config(args.config)
    threads = args.threads or int(config.get("train", {}).get("threads", 1))
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    if device.type == "cpu":
        configure_cpu_allocator()  # as a training job does (calql.training.process)
    runs = {
        k: v
        for k, v in resolve_all(config).items()
        if (not args.tasks or k[0] in args.tasks) and (not args.methods or k[1] in args.methods)
    }
    meta = machine_meta(device, threads, args.config)
    meta.update(loadavg_at_start=_loadavg(), other_cpu_busy_at_start=_cpu_busy())
    t0 = time.perf_counter()
    gate = QuietGate(args.wait_quiet, args.wait_max, args.wait_budget)
    groups = measure_envs(config, runs, device, args, gate)
    cells = update_cells(config, runs, groups)
    timed = measure_updates(cells, device, args, gate)
    jobs = []
    for (task_name, method), run in runs.items():
        group = groups[env_group(get_task(config, task_name))]
        updates = {p: timed[cells[(task_name, method, p)]]["s_median"] for p in PHASE_OF if run[p] is not None}
        job = project(run, group, updates)
        for phase in updates:
            job[phase]["other_cpu_busy_before"] = timed[cells[(task_name, method, phase)]]["other_cpu_busy_before"]
        jobs.append(job)
    meta.update(
        loadavg_at_end=_loadavg(),
        other_cpu_busy_at_end=_cpu_busy(),
        benchmark_minutes=(time.perf_counter() - t0) / 60.0,
        subset=bool(args.tasks or args.methods),
        waited_for_quiet_s=gate.waited,
        settings={
            k: getattr(args, k)
            for k in (
                "warmup",
                "repeats",
                "block_seconds",
                "min_env_steps",
                "wait_quiet",
                "wait_max",
                "wait_budget",
                "retries",
                "noisy_spread",
            )
        },
    )
    return {
        "meta": meta,
        "envs": groups,
        "updates": list(timed.values()),
        "jobs": jobs,
        "totals": summarize(jobs, len(config["seeds"]), threads, args.margin),
        "config_resources": {k: config.get("resources", {}).get(k) for k in ("pretrain", "finetune")},
    }


# ----------------------------------------------------------------------------- docs/cost.md


def _h(value: float | None) -> str:
    return "n/m" if value is None else (f"{value:,.1f}" if value < 100 else f"{value:,.0f}")


def _keys(entries: dict[str, Any]) -> list[str]:
    """Result keys in display order: the config's CPU and GPU runs first, other thread counts after."""
    return sorted(entries, key=lambda k: ({"cpu": 0, "cuda": 1}.get(k, 2), k))


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.0f} %"


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{1e3 * value:,.{digits}f}"


def _seconds_table(entry: dict[str, Any]) -> list[str]:
    """Per task x method on one device: the measured seconds and the projected hours per job."""
    lines = [
        "| task | method | ms/grad step pretrain | ms/grad step finetune | UTD | ms/env step (train) "
        "| ms/eval step | pretrain h/job | finetune h/job |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    threshold = entry["meta"]["settings"]["wait_quiet"] or 0.3

    def busy(phase: dict[str, Any]) -> str:
        value = phase.get("other_cpu_busy_before")
        return " *" if value is not None and value >= threshold else ""

    for j in entry["jobs"]:
        ft, pre = j["finetune"], j.get("pretrain")
        lines.append(
            f"| {j['task']} | {j['method']} | {_ms(pre['s_per_update']) + busy(pre) if pre else '-'} "
            f"| {_ms(ft['s_per_update'])}{busy(ft)} | {ft['utd_ratio']:g} | {_ms(ft['s_per_env_step'], 2)} "
            f"| {_ms(ft['s_per_eval_step'], 2)} | {_h(pre['total_s'] / 3600) if pre else '-'} "
            f"| {_h(ft['total_s'] / 3600)} |"
        )
    return lines


def _hours_table(entries: dict[str, Any]) -> list[str]:
    """Projected hours per job side by side, CPU and GPU; n/m = not measured on that device."""
    by_device = {d: {(j["task"], j["method"]): j for j in e["jobs"]} for d, e in entries.items()}
    keys = list(dict.fromkeys(k for jobs in by_device.values() for k in jobs))
    columns = list(dict.fromkeys([*_keys(entries), "cuda"]))  # the GPU columns even before a cuda run
    lines = [
        "| task | method | " + " | ".join(f"pretrain h/job {d} | finetune h/job {d}" for d in columns) + " |",
        "|---|---|" + "---|---|" * len(columns),
    ]
    for key in keys:
        cells = []
        for d in columns:
            j = by_device.get(d, {}).get(key)
            if j is None:
                cells += ["n/m", "n/m"]
            else:
                cells += [_h(j["pretrain"]["total_s"] / 3600) if "pretrain" in j else "-"]
                cells += [_h(j["finetune"]["total_s"] / 3600)]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return lines


def _totals_lines(entries: dict[str, Any]) -> list[str]:
    """Sweep totals and the Slurm proposal, one column per measured device."""
    devices = _keys(entries)
    lines = ["| | " + " | ".join(devices) + " |", "|---|" + "---|" * len(devices)]

    def row(label: str, fn: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(entries[d]["totals"]) for d in devices) + " |")

    row("pre-training jobs", lambda t: str(t["pretrain"]["jobs"]))
    row("fine-tuning jobs", lambda t: str(t["finetune"]["jobs"]))
    row("pre-training, job-hours", lambda t: _h(t["pretrain"]["job_hours"]))
    row("fine-tuning, job-hours", lambda t: _h(t["finetune"]["job_hours"]))
    row("all, job-hours (GPU-hours on cuda)", lambda t: _h(t["job_hours"]))
    row("all, core-hours (job-hours x threads)", lambda t: _h(t["core_hours"]))
    for phase in ("pretrain", "finetune"):
        row(
            f"longest {phase} job",
            lambda t, p=phase: (
                f"{t[p]['longest']['task']} / {t[p]['longest']['method']}: {_h(t[p]['longest']['hours'])} h"
            ),
        )
        row(
            f"proposed `resources.{phase}.runtime` (min)",
            lambda t, p=phase: f"**{t[p]['runtime_min']:,}** ({t['margin']:g} x longest, rounded up to the hour)",
        )
    lines += ["", "Per method, job-hours over all tasks and seeds:", ""]
    lines += ["| method | " + " | ".join(f"pretrain {d} | finetune {d}" for d in devices) + " |"]
    lines += ["|---|" + "---|---|" * len(devices)]
    for method in entries[devices[0]]["totals"]["per_method"]:
        cells = []
        for d in devices:
            m = entries[d]["totals"]["per_method"].get(method, {})
            cells += [_h(m.get("pretrain_h")) if m.get("pretrain_h") else "-", _h(m.get("finetune_h"))]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _meta_lines(entries: dict[str, Any]) -> list[str]:
    """Where and when each device's numbers were measured, with the load the machine carried."""
    lines = []
    for d in list(dict.fromkeys(["cpu", "cuda", *_keys(entries)])):
        if d not in entries:
            lines.append(f"- **{d}**: not measured yet (see below).")
            continue
        m = entries[d]["meta"]
        gpu = f"GPU {m['gpu']}, " if m.get("gpu") else ""
        lines.append(
            f"- **{d}**: {m['time']} on {m['node']}, {gpu}{m['cpu_count']} CPUs ({m['cpu']}), torch {m['torch']}, "
            f"mujoco {m['mujoco']}, {m['threads']} torch threads, OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}; "
            f"load average at start {m['loadavg_at_start']}, at end {m['loadavg_at_end']}; other processes "
            f"used {_pct(m['other_cpu_busy_at_start'])} of the CPUs just before (at the end: "
            f"{_pct(m['other_cpu_busy_at_end'])}); the benchmark took "
            f"{m['benchmark_minutes']:.1f} min, {m['waited_for_quiet_s']:.0f} s of it waiting for quiet CPUs "
            f"(settings: {', '.join(f'{k}={v}' for k, v in m['settings'].items())})"
            + (" (**subset** of the tasks/methods)" if m["subset"] else "")
            + "."
        )
    return lines


DOC_HEAD = """# Cost of the paper sweep (`config/paper.yaml`)

Measured by `benchmarks/bench_paper_cost.py` (issue 19, point 5): what one job of each rule costs
and what the whole sweep (10 tasks x 8 methods x 4 seeds; pre-training for the methods that
pre-train, fine-tuning for all) costs, with a proposed Slurm `runtime` per training rule. This file
is generated; rerun the benchmark instead of editing the numbers.

```bash
.venv/bin/python benchmarks/bench_paper_cost.py                    # CPU, the config's 2 threads (~10 min)
python benchmarks/bench_paper_cost.py --device cuda                # on a GPU node: fills the GPU columns
```

## How it is measured

- Every (task, method) is resolved with `resolve_all(load_config("config/paper.yaml"))`, so network
  sizes, batch sizes (AWAC 1024), N = 10 CQL actions, RLPD's 10 critics and UTD 20, budgets and
  evaluation schedules are the sweep's own.
- **Gradient step**: `make_agent` at the resolved hyperparameters and the env's obs/act dims,
  `set_mode("offline")` for pre-training and `"online"` for fine-tuning, one random batch of the
  resolved batch size (the cost does not depend on the values), warm-up, then the **median** of
  5 blocks of updates, each about 0.5 s long and a whole number of RLPD's actor period (20);
  `torch.cuda.synchronize` around each block on cuda. Cells with equal algorithm, hyperparameters,
  dims, batch and phase are measured once (AntMaze medium and large share theirs); SAC and Hybrid RL
  run the same agent but are timed separately, so their two rows show the run-to-run noise. Before
  each cell the benchmark waits (at most `--wait-max` s per cell, `--wait-budget` s in all) until other processes use < 30 % of
  the CPUs; a cell that started on busy CPUs or whose blocks differ by > 1.25x is re-timed (up to
  twice) and the lowest median kept (other jobs only slow an update down).
  Not included: drawing the batch from the replay buffers (indexing, host-to-device copy).
- **Env step**: the real gymnasium-robotics env (`calql.envs.make_env`, mujoco as installed) run
  by `run_episode`, the training loop's rollout code, for at least 1,000 steps of whole episodes
  with an untrained Cal-QL policy, stochastic (fine-tuning) and deterministic (evaluation). This
  work is single-threaded, so on CPU the process's CPU time is used when it is below the wall time
  (it leaves out waiting for a core held by other jobs; both are in the JSON). Each
  method's own `act` cost (single observation) is measured and replaces Cal-QL's. Kitchen tasks
  share one env id and one measurement.
- **Projection per job**: pre-training = steps x s/update + evaluations x eval_episodes x max
  episode length x s/eval step; fine-tuning = env_steps x s/env step + (env_steps - random_steps) x
  utd_ratio x s/update + evaluations likewise (the same whether a loop does its updates at the
  episode end or after every env step: utd_ratio updates per env step either way). Evaluations are counted at 0, every
  `eval_every`(`_env_steps`) and at the end. Evaluation time is an **upper bound** (every episode
  at full length; AntMaze and Adroit episodes end at the goal), and so is fine-tuning's env time
  for Adroit (the episode ends at success). Not included: checkpoints (every 50k steps or 10 min),
  the calibration probe, MC labeling, job start-up, the dataset and label rules.
- Totals multiply by the 4 seeds. Core-hours = job-hours x the job's threads (2).
- **Proposed runtime** = 1.5 x the longest job of the rule, rounded up to the hour. Both phases
  checkpoint and resume from `RUN/<phase>/checkpoints/last.pt` (workflow/rules/train.smk), so a
  job that hits the limit continues when the workflow is rerun.

**Caveat on the CPU numbers.** They come from a shared 2-vCPU VM: its speed varies by about
+-20 % within a day and up to 2x between days (benchmarks/README.md), and other engineers' jobs
may run at the same time; the load average and the other processes' CPU use are recorded below
and in the JSON. Treat the CPU hours as the right order of magnitude, not to better than 2x.

"""


def _breakdown_lines(entry: dict[str, Any]) -> list[str]:
    """Where the sweep's time goes on one device: updates vs env steps vs evaluation episodes."""
    parts = {
        "pre-training updates": sum(j["pretrain"]["train_s"] for j in entry["jobs"] if "pretrain" in j),
        "pre-training evaluations": sum(j["pretrain"]["eval_s"] for j in entry["jobs"] if "pretrain" in j),
        "fine-tuning updates": sum(j["finetune"]["update_s"] for j in entry["jobs"]),
        "fine-tuning env steps": sum(j["finetune"]["env_s"] for j in entry["jobs"]),
        "fine-tuning evaluations (upper bound)": sum(j["finetune"]["eval_s"] for j in entry["jobs"]),
    }
    total = sum(parts.values())
    seeds = entry["totals"]["seeds"]
    lines = ["| part | job-hours | share |", "|---|---|---|"]
    lines += [f"| {k} | {_h(v * seeds / 3600)} | {100 * v / total:.1f} % |" for k, v in parts.items()]
    return lines


def render_doc(entries: dict[str, Any]) -> str:
    """docs/cost.md from every device entry present in the results file."""
    lines = [DOC_HEAD, "## Where and when", ""] + _meta_lines(entries)
    if "cuda" not in entries:
        lines += [
            "",
            "No GPU was available in the session that wrote this file, so the GPU columns read n/m "
            "(not measured); `python benchmarks/bench_paper_cost.py --device cuda` on a GPU node adds "
            "them (and a GPU column to the totals) without touching the CPU numbers.",
        ]
    if "cpu" not in entries:
        lines += [
            "",
            "The CPU run at the config's thread count (`cpu`) is not in this file: it needs quiet or "
            "dedicated cores (with 2 OpenMP threads and a busy partner core updates were 5 to 90x slower "
            "than quiet in the session that wrote it), so rerun `.venv/bin/python "
            "benchmarks/bench_paper_cost.py` there.",
        ]
    if any(k not in ("cpu", "cuda") for k in entries):
        lines += [
            "",
            "A column such as `cpu-1thread` is a run with `--threads N` other than the config's: with one "
            "thread each update and env step costs its process CPU time (when below the wall time), which "
            "leaves out the time other jobs held the core, so it is the measurement that stays usable on a "
            "busy shared machine. A 1-thread job is slower than the config's 2-thread one on dedicated "
            "cores (benchmarks/README.md: paper-size Cal-QL 290 vs 167 ms on a quiet day), so its hours "
            "are an upper bound for the 2-thread jobs.",
        ]
    lines += ["", "## Totals and proposed Slurm runtime", ""] + _totals_lines(entries)
    for d in _keys(entries):
        lines += ["", f"Where the time goes ({d}, whole sweep):", ""] + _breakdown_lines(entries[d])
    lines += ["", "## Projected hours per job (one job = one task x method x seed)", ""] + _hours_table(entries)
    for d in _keys(entries):
        label = {"cpu": "CPU", "cuda": "GPU"}.get(d, d)
        if d in entries:
            lines += ["", f"## Measured on the {label} ({d})", ""] + _seconds_table(entries[d])
            lines += [
                "",
                "`*`: the cell started while other processes used at least "
                f"{entries[d]['meta']['settings']['wait_quiet'] or 0.3:g} of the CPUs (after the bounded wait), "
                "so it is probably slower than on a quiet machine.",
            ]
    cur = next(iter(entries.values()))["config_resources"]
    lines += [
        "",
        f"`config/paper.yaml` requests at the time of measuring: pretrain runtime {cur['pretrain']['runtime']} min, "
        f"finetune {cur['finetune']['runtime']} min (with {cur['pretrain'].get('gpu', 0)} GPU). "
        "Raw numbers: `benchmarks/results_paper_cost.json`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="config/paper.yaml")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's train.threads)")
    p.add_argument("--tasks", nargs="*", default=None, help="subset of tasks (default: all)")
    p.add_argument("--methods", nargs="*", default=None, help="subset of methods (default: all)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up updates per cell")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks per cell; the median is used")
    p.add_argument("--block-seconds", type=float, default=0.5, help="target length of a timed block")
    p.add_argument("--min-env-steps", type=int, default=1000, help="env steps per rollout measurement")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.3,
        metavar="FRACTION",
        help="before each cell wait until other processes use < FRACTION of the CPUs (0 = never wait)",
    )
    p.add_argument("--wait-max", type=float, default=30.0, help="longest wait per cell for --wait-quiet (s)")
    p.add_argument("--wait-budget", type=float, default=240.0, help="total wait for --wait-quiet (s)")
    p.add_argument("--retries", type=int, default=2, help="re-timings of disturbed cells (lowest median kept)")
    p.add_argument("--noisy-spread", type=float, default=1.25, help="max/min block time that marks a cell disturbed")
    p.add_argument("--margin", type=float, default=1.5, help="Slurm runtime = margin x the longest job")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results_paper_cost.json"))
    p.add_argument("--doc", default=str(ROOT / "docs" / "cost.md"))
    p.add_argument("--render-only", action="store_true", help="only rewrite --doc from the results in --out")
    args = p.parse_args(argv)
    args.wait_quiet = args.wait_quiet or None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("calql").setLevel(logging.WARNING)
    # gymnasium's passive checker warns that some mujoco envs reuse their observation arrays: a
    # property of the env that does not change its speed, so it is only noise in this output.
    warnings.filterwarnings("ignore", message=".*share an object.*")
    os.chdir(ROOT)  # the config's relative paths
    out = Path(args.out)
    entries = json.loads(out.read_text()) if out.exists() else {}
    if args.render_only:
        write_text(args.doc, render_doc(entries))
        return 0
    entry = run_benchmark(args)
    # The config's thread count is the plan's; a run at another count is kept beside it.
    default_threads = int(load_config(args.config).get("train", {}).get("threads", 1))
    key = args.device if entry["meta"]["threads"] == default_threads else f"{args.device}-{args.threads}thread"
    entries[key] = entry
    write_json(out, entries)
    write_text(args.doc, render_doc(entries))
    t = entry["totals"]
    print(
        f"{args.device}: pretrain {t['pretrain']['job_hours']:,.0f} job-h, finetune {t['finetune']['job_hours']:,.0f} "
        f"job-h, {t['core_hours']:,.0f} core-h; runtime pretrain {t['pretrain']['runtime_min']} min, finetune "
        f"{t['finetune']['runtime_min']} min; wrote {out} and {args.doc}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
