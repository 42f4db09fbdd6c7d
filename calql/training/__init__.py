"""Training stage: resolved run configs and presets, offline pre-training, online fine-tuning,
checkpoints that resume exactly, and evaluation."""

from calql.training.resolve import resolve_all, resolve_run_config

__all__ = ["resolve_all", "resolve_run_config"]
