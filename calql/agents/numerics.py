"""Divergence guard: check a step's loss tensors for NaN/inf with a single host sync.

The training loop calls ``check_finite`` every K steps (not every step), so updates never wait
for the device; the error names the step and the offending losses so a diverged run stops with
a clear message instead of writing NaN checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor

from calql.errors import TrainingDivergedError


def check_finite(metrics: dict[str, Tensor], step: int) -> None:
    """Raise TrainingDivergedError naming ``step`` and every non-finite entry of ``metrics``."""
    if not metrics:
        return
    names = list(metrics)
    values = torch.stack([metrics[k].detach().reshape(()).float() for k in names])
    finite = torch.isfinite(values)
    if bool(finite.all()):  # the one host sync
        return
    bad = [f"{names[i]}={values[i].item()}" for i in range(len(names)) if not bool(finite[i])]
    raise TrainingDivergedError(f"training diverged at step {step}: non-finite {', '.join(bad)}")
