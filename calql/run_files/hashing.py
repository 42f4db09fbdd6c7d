"""The hashes that tie a run's files to the config that made them.

- :func:`config_hash`: 12 hex digits of a JSON config; ``run.json`` records the whole run's
  (``run_config_hash``) and its phase's (``config_hash``), and a checkpoint's identity holds the
  phase's. Training skips a finished phase, resumes a checkpoint and the analysis admits a run
  only when the recorded phase hash equals the current config's.
- :func:`phase_config` / :func:`phase_hash`: what determines one phase's numbers: the run config
  without the other phase's budget (a fine-tuning budget change keeps the pre-training), and for
  fine-tuning the pre-training's hash.
- :func:`digest`: 16 hex digits, for Snakemake rerun keys (:mod:`calql.rerun_keys`) and file names.

The two hash functions serialise differently (``digest`` without spaces); both are kept as they
are because recorded run files and Snakemake's metadata hold their values.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _json_sha256(obj: Any, separators: tuple[str, str] | None, digits: int) -> str:
    """The first ``digits`` hex digits of the SHA-256 of ``obj`` as key-sorted JSON."""
    text = json.dumps(obj, sort_keys=True, separators=separators, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


def config_hash(config: Any) -> str:
    """A short, stable hash of a JSON-serialisable config (key order does not matter)."""
    return _json_sha256(config, None, 12)


def digest(obj: Any) -> str:
    """A short stable hash of JSON-able data (used in file names and rerun keys)."""
    return _json_sha256(obj, (",", ":"), 16)


def phase_config(run: dict[str, Any], phase: str) -> dict[str, Any]:
    """What determines one phase's numbers: the run config without the other phase's budgets.

    A pre-training checkpoint stays valid when only the fine-tuning budget changes.
    """
    other = {"pretrain": "finetune", "finetune": "pretrain"}[phase]
    out = {k: v for k, v in run.items() if k != other}
    if phase == "finetune" and run.get("pretrain") is not None:
        out["pretrain_hash"] = config_hash(phase_config(run, "pretrain"))
    return out


def phase_hash(run: dict[str, Any], phase: str) -> str:
    """:func:`config_hash` of :func:`phase_config`: the ``config_hash`` of the phase's run.json."""
    return config_hash(phase_config(run, phase))
