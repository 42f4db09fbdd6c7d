"""The record of one training phase: the rows of ``metrics.csv`` and what goes into them.

:class:`PhaseRecorder` owns the evaluation rows of one phase, the running means of the training
losses since the last evaluation (``train/*`` columns), the timers behind the ``perf/*`` and
``wall_time_s`` columns, the divergence check, and the optional live MLflow run. Its state goes
into every checkpoint so a resumed phase writes exactly the same rows.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from calql.errors import TrainingDivergedError
from calql.run_files.metrics_csv import TRAIN_PREFIX, write_metrics

if TYPE_CHECKING:
    from calql.training.phase_files import PhaseContext

log = logging.getLogger(__name__)


class LiveLogger(Protocol):
    def log_row(self, row: dict[str, Any], step: int) -> None: ...
    def finish(self, ok: bool) -> None: ...


@dataclass
class PhaseRecorder:
    """Rows of metrics.csv, running loss means, timers, divergence check, live logging."""

    ctx: PhaseContext
    live: LiveLogger | None = None
    check_every: int = 1
    rows: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    elapsed_before: float = 0.0

    def __post_init__(self) -> None:
        self._keys: tuple[str, ...] | None = None
        self._vec: torch.Tensor | None = None
        self._t_start = time.perf_counter()
        self._t_mark = self._t_start
        self._steps_mark = (0, 0)
        self._eval_started: float | None = None
        # A host sync per step costs little on CPU; on a GPU check every 100 steps (window named).
        if self.ctx.device.type != "cpu":
            self.check_every = max(self.check_every, 100)

    # ---- training losses ------------------------------------------------------------------
    def accumulate(self, metrics: dict[str, torch.Tensor], step: int) -> None:
        """Add one update's scalars to the running sums: one stacked float64 vector on the device
        (a few tensor ops per step whatever the number of losses, and no host sync)."""
        keys = tuple(metrics)
        values = torch.stack([v.detach().reshape(()) for v in metrics.values()]).to(torch.float64)
        if self._vec is None or self._keys is None:  # first step of a window
            self._keys, self._vec = keys, values.clone()
        elif keys == self._keys:
            self._vec += values
        else:  # rare: the agent reported other losses within this window; sum per key (union)
            merged = self._sums_dict()
            for i, k in enumerate(keys):
                merged[k] = merged[k] + values[i] if k in merged else values[i].clone()
            self._keys, self._vec = tuple(merged), torch.stack(list(merged.values()))
        self.count += 1
        if step % self.check_every == 0:
            if self.check_every == 1:
                self._check_finite(keys, values, step)
            else:
                self._check_finite(self._keys, self._vec, step)

    def _sums_dict(self) -> dict[str, torch.Tensor]:
        if self._vec is None or self._keys is None:
            return {}
        return {k: self._vec[i] for i, k in enumerate(self._keys)}

    def _check_finite(self, keys: tuple[str, ...], values: torch.Tensor, step: int) -> None:
        if bool(torch.isfinite(values).all()):
            return
        bad = [(k, v) for k, v in zip(keys, values.tolist()) if not math.isfinite(v)]
        where = (
            f"gradient step {step}"
            if self.check_every == 1
            else f"gradient steps {step - self.check_every + 1}..{step}"
        )
        raise TrainingDivergedError(
            f"{self.ctx.phase} of {self.ctx.run['task']}/{self.ctx.run['method']}/seed{self.ctx.seed} diverged at "
            f"{where}: "
            + ", ".join(f"{k} = {v}" for k, v in bad)
            + " (lower the learning rates or check the rewards; the last checkpoint is kept)"
        )

    def _train_means(self) -> dict[str, float]:
        if self.count == 0 or self._vec is None or self._keys is None:
            return {}
        sums = self._vec.tolist()
        out = {f"{TRAIN_PREFIX}{k}": sums[i] / self.count for i, k in enumerate(self._keys)}
        self._keys, self._vec, self.count = None, None, 0
        return out

    # ---- evaluation rows ------------------------------------------------------------------
    def begin_eval(self) -> None:
        self._eval_started = time.perf_counter()

    def wall_time(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t_start)

    def add_row(
        self, grad_step: int, env_steps: int, evaluation: dict[str, float], calibration: dict[str, float]
    ) -> dict[str, Any]:
        """Append an evaluation row, rewrite metrics.csv and log it live."""
        now = time.perf_counter()
        loop_time = (self._eval_started or now) - self._t_mark
        d_grad, d_env = grad_step - self._steps_mark[0], env_steps - self._steps_mark[1]
        run = self.ctx.run
        row: dict[str, Any] = {
            "task": run["task"],
            "method": run["method"],
            "seed": self.ctx.seed,
            "phase": self.ctx.phase,
            "grad_step": int(grad_step),
            "env_steps": int(env_steps),
            **evaluation,
            **calibration,
            **self._train_means(),
            "perf/grad_steps_per_s": d_grad / loop_time if d_grad and loop_time > 0 else None,
            "perf/env_steps_per_s": d_env / loop_time if d_env and loop_time > 0 else None,
            "wall_time_s": self.wall_time(),
        }
        self.rows.append(row)
        write_metrics(self.ctx.metrics_path, self.rows)
        if self.live is not None:
            self.live.log_row(row, env_steps if self.ctx.phase == "finetune" else grad_step)
        log.info("%s %s: %s", self.ctx.phase, _where(grad_step, env_steps, self.ctx.phase), _summary(row))
        self._t_mark = time.perf_counter()
        self._steps_mark = (grad_step, env_steps)
        self._eval_started = None
        return row

    # ---- checkpoint state -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "rows": [dict(r) for r in self.rows],
            "sums": {k: v.cpu().clone() for k, v in self._sums_dict().items()},
            "count": self.count,
            "wall_time": self.wall_time(),
        }

    def load_state_dict(self, state: dict[str, Any], grad_step: int, env_steps: int) -> None:
        self.rows = [dict(r) for r in state["rows"]]
        sums = state["sums"]
        self._keys = tuple(sums) if sums else None
        self._vec = torch.stack([v.to(self.ctx.device, torch.float64) for v in sums.values()]) if sums else None
        self.count = int(state["count"])
        self.elapsed_before = float(state["wall_time"])
        self._t_start = self._t_mark = time.perf_counter()
        self._steps_mark = (grad_step, env_steps)


def _where(grad_step: int, env_steps: int, phase: str) -> str:
    return f"env step {env_steps} (grad step {grad_step})" if phase == "finetune" else f"grad step {grad_step}"


def _summary(row: dict[str, Any]) -> str:
    keys = ("score", "success_rate", "return_mean", "q_policy", "mc_return")
    return ", ".join(f"{k}={row[k]:.3g}" for k in keys if isinstance(row.get(k), float))
