"""Seeds and random-number-generator state: what makes a run repeatable and resumable.

Every random stream of a run is derived from the run seed and a name (:func:`derive_seed`), so
streams are independent and adding one never shifts another. Environments are re-seeded at every
episode from ``(seed, phase, purpose, index)``: an episode's start state is then a function of its
index alone, and a checkpoint never needs to capture a simulator's RNG or mid-episode state.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

import numpy as np
import torch


def derive_seed(seed: int, *names: str | int) -> int:
    """A 32-bit seed for the stream ``names`` of run ``seed`` (stable across processes and versions)."""
    stream = [zlib.crc32(str(n).encode()) for n in names]
    return int(np.random.SeedSequence(entropy=int(seed), spawn_key=stream).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed the global generators (python, numpy, torch incl. CUDA) that libraries may use."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """The state of every global generator, for a checkpoint."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def generator_state(gen: np.random.Generator) -> dict[str, Any]:
    return gen.bit_generator.state


def generator_from_state(state: dict[str, Any]) -> np.random.Generator:
    gen = np.random.Generator(np.random.PCG64())
    gen.bit_generator.state = state
    return gen
