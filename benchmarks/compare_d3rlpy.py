#!/usr/bin/env python3
"""Independent offline Cal-QL / CQL baseline with d3rlpy on our PointMaze Medium dataset.

What it compares
----------------
Our offline (pretrain) Cal-QL and CQL scores on the default small task (PointMaze Medium,
``medium-diverse``) against d3rlpy's CalQL / CQL trained on the *same* HDF5 file with the same
hyperparameters (the ``pointmaze`` preset of ``calql/training/presets.py``, mapped onto d3rlpy's
CQLConfig / CalQLConfig) and the same budget (10,000 gradient steps). If d3rlpy reaches a much
higher success rate than our agents, our offline scores are a bug, not a property of the task.
See benchmarks/compare_d3rlpy.md for the mapping and the results.

It reads only the labeled HDF5 (D4RL keys + ``train_rewards`` + ``mc_returns``) with h5py and
uses gymnasium-robotics for evaluation; it imports nothing from the ``calql`` package.

- Dataset: d3rlpy MDPDataset, episodes split at terminals (success steps) and timeouts; rewards
  = our ``train_rewards`` (10 r - 5, fed directly instead of a reward scaler: d3rlpy has no affine
  scaler); returns-to-go by d3rlpy's own SparseRewardTransitionPicker(failure_return=-500,
  step_reward=-5), which matches our ``mc_returns`` (checked at start-up, printed as
  ``rtg_check``). Five steps are both terminal and timeout; d3rlpy forbids that, so the
  terminal wins (as in our labeling: their MC return is +5).
- Evaluation: ``PointMaze_Medium-v3``, continuing_task=False, 600-step episodes, reset with
  reset_cell [1,1] / goal_cell [6,6], observation = obs["observation"] (4-dim), deterministic
  action (d3rlpy ``predict`` = tanh(mean)), success = the env's terminated/info["success"]
  (within 0.45 of the goal). Score = 100 x success rate over ``--eval-episodes`` (20) episodes,
  at steps 0, 2000, ..., 10000. Episode k of eval i of seed s is reset with seed
  s*100000 + i*1000 + k.

How to run
----------
    python3 -m venv /tmp/d3venv
    /tmp/d3venv/bin/pip install torch==2.13.0            # first and alone (CPU wheel)
    /tmp/d3venv/bin/pip install d3rlpy==2.8.1 --no-deps  # it pins gymnasium==1.0.0
    /tmp/d3venv/bin/pip install tqdm h5py==3.16.0 'gym>=0.26' click typing-extensions structlog \\
        colorama dataclasses-json scikit-learn gymnasium==1.4.0 gymnasium-robotics==1.4.2 \\
        mujoco==3.11.0 numpy==2.4.6
    nice -n 10 /tmp/d3venv/bin/python benchmarks/compare_d3rlpy.py --method calql --seed 100 \\
        --out benchmarks/results/compare_d3rlpy_medium_diverse.csv

Rows are appended to ``--out`` as each evaluation finishes (header written when the file is
new): library, method, seed, step, score, plus success_rate, wall_s and cpu_s (cumulative,
training + evaluation), sampler. Run one (method, seed) per process.

Sampler: by default (``--sampler fast``) mini-batches are drawn with numpy from flat arrays of
exactly the transitions d3rlpy's ReplayBuffer would use (uniform over its 99,805 transitions: the
last step of each timeout episode has no next observation in d3rlpy and is dropped; next
observation of a terminal step = zeros, terminal flag 1; returns-to-go = ``mc_returns``, equal to
d3rlpy's own SparseRewardTransitionPicker values within 6e-5) and handed to d3rlpy's own
``impl.update`` as a TorchMiniBatch, i.e. what ``algo.update`` does minus the per-transition
Python picking (which cost ~20% of a step). ``--sampler d3rlpy`` uses ``algo.fitter`` unchanged.
The algorithm (losses, optimizers, target updates) is d3rlpy's in both cases.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time

import h5py
import numpy as np

DEFAULT_DATA = "/tmp/sweep1/results/sweeps/default-task/labeled/medium-diverse.hdf5"


def load_dataset(path: str):
    import d3rlpy

    with h5py.File(path, "r") as f:
        obs = f["observations"][:].astype(np.float32)
        act = f["actions"][:].astype(np.float32)
        rew = f["train_rewards"][:].astype(np.float32)  # = 10 r - 5
        term = f["terminals"][:].astype(bool)
        tout = f["timeouts"][:].astype(bool)
        mc = f["mc_returns"][:].astype(np.float32)
        meta = json.loads(f.attrs.get("calql_meta", "{}"))
    both = term & tout
    tout = tout & ~term  # d3rlpy asserts never both; the success (terminal) wins
    picker = d3rlpy.dataset.SparseRewardTransitionPicker(failure_return=-500.0, step_reward=-5.0)
    ds = d3rlpy.dataset.MDPDataset(
        observations=obs,
        actions=act,
        rewards=rew.reshape(-1, 1),
        terminals=term.astype(np.float32),
        timeouts=tout.astype(np.float32),
        transition_picker=picker,
        action_space=d3rlpy.ActionSpace.CONTINUOUS,
    )
    return ds, dict(n=len(obs), n_both=int(both.sum()), mc=mc, meta=meta, picker=picker)


def check_returns_to_go(ds, info, gamma: float) -> dict:
    """d3rlpy's returns-to-go (as CalQL sees them) for every transition vs our ``mc_returns``."""
    from d3rlpy.torch_utility import _compute_return_to_go

    mc = info["mc"]
    ours, theirs = [], []
    start = 0
    dropped = 0
    for ep in ds.episodes:
        n = ep.size()
        for i in range(ep.transition_count):
            t = info["picker"](ep, i)
            theirs.append(float(_compute_return_to_go(gamma, t.rewards_to_go, None)[0]))
            ours.append(float(mc[start + i]))
        dropped += n - ep.transition_count
        start += n
    ours_a, theirs_a = np.array(ours), np.array(theirs)
    diff = np.abs(ours_a - theirs_a)
    return {
        "transitions_used": len(ours),
        "transitions_dropped_by_d3rlpy": dropped,
        "episodes": len(ds.episodes),
        "max_abs_diff": float(diff.max()),
        "n_diff_gt_1e-3": int((diff > 1e-3).sum()),
        "mean_ours": float(ours_a.mean()),
        "mean_d3rlpy": float(theirs_a.mean()),
    }


def flat_transitions(ds, info) -> dict:
    """Flat arrays of the transitions d3rlpy's buffer samples from, in d3rlpy's own conventions."""
    obs, act, rew, nobs, term, rtg = [], [], [], [], [], []
    start = 0
    for ep in ds.episodes:
        n, m = ep.size(), ep.transition_count
        o = np.asarray(ep.observations, dtype=np.float32)
        nxt = np.zeros_like(o[:m])
        k = min(m, n - 1)
        nxt[:k] = o[1 : k + 1]  # terminal step (if any) keeps zeros, as BasicTransitionPicker
        t = np.zeros((m, 1), np.float32)
        if ep.terminated:
            t[m - 1] = 1.0
        obs.append(o[:m])
        act.append(ep.actions[:m])
        rew.append(ep.rewards[:m])
        nobs.append(nxt)
        term.append(t)
        rtg.append(info["mc"][start : start + m].reshape(-1, 1))
        start += n

    def cat(xs: list) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(xs).astype(np.float32))

    return dict(obs=cat(obs), act=cat(act), rew=cat(rew), nobs=cat(nobs), term=cat(term), rtg=cat(rtg))


def fast_update(algo, flat: dict, batch_size: int) -> dict:
    import torch
    from d3rlpy.torch_utility import TorchMiniBatch

    idx = np.random.randint(len(flat["obs"]), size=batch_size)  # uniform, as ReplayBuffer

    def g(k: str) -> torch.Tensor:
        return torch.from_numpy(flat[k][idx])

    act = g("act")
    tb = TorchMiniBatch(
        observations=g("obs"),
        actions=act,
        rewards=g("rew"),
        next_observations=g("nobs"),
        next_actions=torch.zeros_like(act),
        returns_to_go=g("rtg"),
        terminals=g("term"),
        intervals=torch.ones_like(g("term")),
        device="cpu:0",
    )
    loss = algo.impl.update(tb, algo._grad_step)
    algo._grad_step += 1
    return loss


def make_config(method: str, args):
    import d3rlpy

    enc = d3rlpy.models.VectorEncoderFactory(hidden_units=[64, 64], activation="relu")
    kw = dict(
        actor_learning_rate=1e-4,  # policy_lr
        critic_learning_rate=3e-4,  # qf_lr
        temp_learning_rate=1e-4,  # log alpha shares the policy optimizer lr (policy_lr)
        alpha_learning_rate=3e-4,  # Lagrange log alpha' uses qf_lr in ours/official
        actor_encoder_factory=enc,
        critic_encoder_factory=enc,
        batch_size=256,
        gamma=0.99,
        tau=0.05,  # pointmaze preset (official 5e-3)
        n_critics=2,
        initial_temperature=1.0,  # log alpha init 0
        initial_alpha=math.e,  # official log_alpha_prime init 1.0 -> alpha' = e
        alpha_threshold=0.8,  # cql_target_action_gap
        conservative_weight=5.0,  # cql_min_q_weight
        n_action_samples=10,  # cql_n_actions (also used by the max-Q backup)
        soft_q_backup=False,  # backup_entropy False
        max_q_backup=True,  # max_target_backup True
    )
    if method == "calql":
        return d3rlpy.algos.CalQLConfig(**kw)
    return d3rlpy.algos.CQLConfig(**kw)


def orthogonal_init(algo) -> None:
    """Optional: official init (orthogonal, gain sqrt(2) hidden / 1e-2 output, zero bias)."""
    import torch
    from torch import nn

    mods = algo.impl.modules
    for root, out_names in ((mods.policy, ("_mu", "_logstd")), (mods.q_funcs, ("_fc",))):
        for name, m in root.named_modules():
            if isinstance(m, nn.Linear):
                gain = 1e-2 if name.split(".")[-1] in out_names else math.sqrt(2)
                nn.init.orthogonal_(m.weight, gain=gain)
                nn.init.zeros_(m.bias)
    with torch.no_grad():
        for p, tp in zip(mods.q_funcs.parameters(), mods.targ_q_funcs.parameters()):
            tp.copy_(p)


def evaluate(algo, episodes: int, base_seed: int) -> float:
    import gymnasium as gym
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    env = gym.make("PointMaze_Medium-v3", continuing_task=False, max_episode_steps=600)
    opts = {"reset_cell": np.array([1, 1]), "goal_cell": np.array([6, 6])}
    succ = 0
    for k in range(episodes):
        obs, _ = env.reset(seed=base_seed + k, options=opts)
        done = False
        success = False
        while not done:
            a = algo.predict(obs["observation"].astype(np.float32)[None])[0]
            obs, r, terminated, truncated, info = env.step(a)
            success = success or bool(info.get("success", False)) or bool(terminated)
            done = terminated or truncated
        succ += int(success)
    env.close()
    return succ / episodes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", choices=["calql", "cql"], required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--eval-every", type=int, default=2_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--orthogonal-init",
        action="store_true",
        help="re-initialise networks like the official code (off: stock d3rlpy init)",
    )
    p.add_argument("--sampler", choices=["fast", "d3rlpy"], default="fast")
    p.add_argument("--check-rtg", action="store_true", help="compare d3rlpy returns-to-go with mc_returns")
    p.add_argument("--out", default="benchmarks/results/compare_d3rlpy_medium_diverse.csv")
    args = p.parse_args()

    import d3rlpy
    import torch

    torch.set_num_threads(args.threads)
    d3rlpy.seed(args.seed)
    t0, c0 = time.time(), time.process_time()
    ds, info = load_dataset(args.data)
    print(
        f"dataset: {info['n']} transitions, {len(ds.episodes)} episodes, "
        f"{info['n_both']} terminal&timeout steps (terminal kept)",
        flush=True,
    )
    if args.check_rtg:
        print("rtg_check", json.dumps(check_returns_to_go(ds, info, 0.99)), flush=True)

    algo = make_config(args.method, args).create(device="cpu:0")
    algo.build_with_dataset(ds)
    if args.orthogonal_init:
        orthogonal_init(algo)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    def record(step: int) -> None:
        rate = evaluate(algo, args.eval_episodes, args.seed * 100000 + (step // args.eval_every) * 1000)
        row = dict(
            library=f"d3rlpy-{d3rlpy.__version__}",
            method=args.method,
            seed=args.seed,
            step=step,
            score=100.0 * rate,
            success_rate=rate,
            wall_s=round(time.time() - t0, 1),
            cpu_s=round(time.process_time() - c0, 1),
            sampler=args.sampler,
        )
        print(json.dumps(row), flush=True)
        new = not os.path.exists(args.out)
        with open(args.out, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    record(0)
    if args.sampler == "d3rlpy":
        for epoch, metrics in algo.fitter(
            ds,
            n_steps=args.steps,
            n_steps_per_epoch=args.eval_every,
            experiment_name=f"d3rlpy_{args.method}_{args.seed}",
            with_timestamp=False,
            logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
            show_progress=False,
            save_interval=10**9,
        ):
            print(f"epoch {epoch}: " + json.dumps({k: round(float(v), 4) for k, v in metrics.items()}), flush=True)
            record(epoch * args.eval_every)
    else:
        flat = flat_transitions(ds, info)
        acc: dict = {}
        for step in range(1, args.steps + 1):
            for k, v in fast_update(algo, flat, 256).items():
                acc[k] = acc.get(k, 0.0) + float(v)
            if step % args.eval_every == 0:
                print(
                    f"step {step}: " + json.dumps({k: round(v / args.eval_every, 4) for k, v in acc.items()}),
                    flush=True,
                )
                acc = {}
                record(step)
    print(f"done: wall {time.time() - t0:.0f}s cpu {time.process_time() - c0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
