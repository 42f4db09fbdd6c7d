"""Synthetic run files in the training stage's format, for tests of the analysis stage.

These numbers are made up (shapes chosen by hand, noise from a seeded generator); they only
exercise the file format and the analysis code. Never use them as results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calql.run_files import RunKey, phase_hash
from calql.training.resolve import resolve_run_config, run_phases

#: The task, methods and seeds of the small synthetic studies (partial and stale-run tests).
TASKS, METHODS, SEEDS = ("taskA",), ("calql", "iql", "sac"), (0, 1)


def study_config(tmp_path: Path, experiment: str, **train: dict) -> dict:
    """The experiment config of a synthetic study (as written, before validation); ``train``
    keys (e.g. ``pretrain={...}``) become its ``train`` section."""
    config: dict[str, Any] = {
        "experiment": experiment,
        "results_dir": str(tmp_path / "results"),
        "seeds": list(SEEDS),
        "methods": list(METHODS),
        "tasks": {
            "taskA": {"domain": "pointmaze", "env": {"id": "PointMaze_UMaze-v3"}, "source": {"kind": "generated"}}
        },
        "analysis": {"n_bootstrap": 50, "dpi": 50, "formats": ["png"]},
    }
    if train:
        config["train"] = train
    return config


def write_phase(
    runs_dir: Path,
    task: str,
    method: str,
    seed: int,
    phase: str,
    env_steps: Sequence[float],
    scores: Sequence[float],
    grad_steps: Sequence[float] | None = None,
    q_policy: Sequence[float] | None = None,
    mc_return: float = 0.0,
    status: str | None = "complete",
    run_config: dict | None = None,
) -> Path:
    """Write one phase's metrics.csv (and run.json unless ``status`` is None); return its folder.

    ``run_config``: the resolved run config the phase was "made with"; run.json then records it
    and its phase hash, as training does (the analysis admits only phases of the current config).
    """
    n = len(scores)
    grad = np.asarray(grad_steps if grad_steps is not None else env_steps, dtype=float)
    q = np.asarray(q_policy if q_policy is not None else np.zeros(n), dtype=float)
    frame = pd.DataFrame(
        {
            "task": task,
            "method": method,
            "seed": seed,
            "phase": phase,
            "grad_step": grad.astype(int),
            "env_steps": np.asarray(env_steps, dtype=int),
            "score": np.asarray(scores, dtype=float),
            "success_rate": np.asarray(scores, dtype=float) / 100.0,
            "return_mean": np.asarray(scores, dtype=float) / 100.0,
            "q_policy": q,
            "mc_return": np.full(n, mc_return),
            "q_data": q + 1.0,
            "train/critic_loss": np.linspace(1.0, 0.1, n),
            "perf/grad_steps_per_s": 100.0,
            "wall_time_s": np.arange(n, dtype=float),
        }
    )
    folder = RunKey(task, method, seed).dir(Path(runs_dir)) / phase
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "metrics.csv", index=False)
    if status is not None:
        record: dict = {"status": status, "seed": seed}
        if run_config is not None:
            record.update(config=run_config, config_hash=phase_hash(run_config, phase))
        (folder / "run.json").write_text(json.dumps(record))
    return folder


def write_study(
    runs_dir: Path,
    tasks: Sequence[str] = ("taskA", "taskB"),
    methods: Sequence[str] = ("calql", "cql", "iql", "sac"),
    seeds: Sequence[int] = (0, 1, 2),
    pretrain_steps: int = 1000,
    online_steps: int = 2000,
    n_evals: int = 11,
    rng_seed: int = 0,
    config: dict | None = None,
) -> None:
    """A small synthetic study: every method rises during fine-tuning; ``cql`` dips at the start.

    Online evaluations land a few steps after each multiple of the interval (as in training,
    at episode boundaries), so seeds have slightly different grids. With ``config`` (validated,
    naming ``tasks``) each run.json records the run config it resolves to and its hash.
    """
    rng = np.random.default_rng(rng_seed)
    base = {"calql": 60.0, "cql": 55.0, "iql": 50.0, "sac": 0.0}
    for t, task in enumerate(tasks):
        for method in methods:
            run = resolve_run_config(config, task, method) if config is not None else None
            start = max(0.0, base.get(method, 40.0) - 10.0 * t)
            for seed in seeds:
                noise = lambda k: rng.normal(0.0, 3.0, size=k)  # noqa: E731
                if "pretrain" in run_phases(method):
                    grad = np.linspace(0, pretrain_steps, 5)
                    pre = np.clip(np.linspace(0.0, start, 5) + noise(5), 0, 100)
                    write_phase(
                        runs_dir,
                        task,
                        method,
                        seed,
                        "pretrain",
                        np.zeros(5),
                        pre,
                        grad,
                        q_policy=np.linspace(0.0, -60.0 if method == "cql" else -20.0, 5),
                        mc_return=-30.0,
                        run_config=run,
                    )
                x = np.linspace(0, online_steps, n_evals)
                x[1:] += rng.integers(0, 20, size=n_evals - 1)
                frac = x / online_steps
                dip = 25.0 * np.exp(-((frac - 0.1) ** 2) / 0.005) if method == "cql" else 0.0
                y = np.clip(start + (95.0 - start) * frac - dip + noise(n_evals), 0, 100)
                y[0] = start
                write_phase(
                    runs_dir,
                    task,
                    method,
                    seed,
                    "finetune",
                    x,
                    y,
                    pretrain_steps + x,
                    q_policy=np.linspace(-20.0, 40.0, n_evals),
                    mc_return=-30.0,
                    run_config=run,
                )


def record_figure_texts(monkeypatch: Any) -> dict[str, list[str]]:
    """Make every figure the analysis saves also record its texts (notes, titles) by file stem,
    so a test can read what a figure says without parsing images."""
    import analysis.plots

    drawn: dict[str, list[str]] = {}
    save = analysis.plots.save_figure

    def record(fig, stem, formats, dpi):  # noqa: ANN001 - same signature as save_figure
        drawn[stem.name] = [t.get_text() for t in fig.texts]
        return save(fig, stem, formats, dpi)

    monkeypatch.setattr(analysis.plots, "save_figure", record)
    return drawn
