"""What one training phase reads, resolved once: the run config and the task's environment.

The workflow resolves every (task, method) when it parses the config and writes one file per
training phase, ``<results_dir>/configs/runs/<task>/<method>/<phase>.json``, as the output of a
local rule whose rerun key is that phase's own (``calql.rerun_keys.train_key``). The training
rule declares the file as input and runs ``calql pretrain|finetune --run-config FILE``, which
reads it as it is: no job validates or resolves the whole config again. So the file is rewritten
exactly when its phase must rerun, and a change that touches only the other phase (e.g. the
fine-tuning budget) leaves the pre-training file, and so the pre-training, alone.

By hand, ``--config C --task T --method M`` builds the same :class:`RunSpec` with
:meth:`RunSpec.from_config`, in the same single step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calql.atomic import write_json
from calql.config import TaskSpec
from calql.errors import ConfigError
from calql.run_files import PHASES
from calql.training.resolve import resolve_run_config

#: Version of the file layout; a file of another version is refused (rerun the workflow).
FORMAT = 1
#: The keys of a task's config section that training reads: the environment and what the
#: labeled file was labeled with. (Its data `source` and `preprocess` reach training only through
#: the labeled dataset, which is itself an input of the training jobs.)
TRAINING_TASK_KEYS = ("domain", "env", "reward", "gamma")


@dataclass(frozen=True)
class RunSpec:
    """One (task, method)'s resolved run, shared by its seeds and both phases.

    ``run`` is :func:`calql.training.resolve.resolve_run_config`'s result (what checkpoints,
    ``run.json`` and rerun keys hold) and ``task_config`` the part of the task's validated
    config section that training reads (:data:`TRAINING_TASK_KEYS`).
    """

    run: dict[str, Any]
    task_config: dict[str, Any]

    @classmethod
    def from_config(cls, config: dict[str, Any], task_name: str, method: str) -> RunSpec:
        """Resolve one run of a validated config (``calql.config.load_config``)."""
        run = resolve_run_config(config, task_name, method)  # names an unknown task or method
        section = config["tasks"][task_name]
        task = {key: section[key] for key in TRAINING_TASK_KEYS if key in section}
        return cls(run=run, task_config=json.loads(json.dumps(task)))

    @property
    def task_name(self) -> str:
        return str(self.run["task"])

    @property
    def method(self) -> str:
        return str(self.run["method"])

    @property
    def task(self) -> TaskSpec:
        return TaskSpec.from_config(self.task_name, {"source": {}, **self.task_config})

    def to_dict(self, phase: str) -> dict[str, Any]:
        """The file of ``phase``: the whole run (``run.json`` records it), marked with its phase."""
        return {"format": FORMAT, "phase": phase, "run": self.run, "task": self.task_config}

    def write(self, path: str | Path, phase: str) -> None:
        """Write the file of ``phase`` atomically (a crash never leaves half of it)."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, not {phase!r}")
        write_json(Path(path), self.to_dict(phase))

    @classmethod
    def read(cls, path: str | Path, phase: str) -> RunSpec:
        """Read the file :meth:`write` wrote for ``phase``; a damaged or foreign file, or another
        phase's, is an error naming it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"run config file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"run config file {path} is not readable JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(
                f"run config file {path} has format {found!r}, expected {FORMAT}: it was written "
                f"by another version of calql; delete it and rerun the workflow to write it again (its "
                f"phase then reruns), or run the phase by hand with --config --task --method"
            )
        run, task = data.get("run"), data.get("task")
        if not isinstance(run, dict) or not {"task", "method", phase} <= set(run) or not isinstance(task, dict):
            raise ConfigError(f"run config file {path} lacks the run's task, method, {phase} budget or task settings")
        if data.get("phase") != phase:
            raise ConfigError(f"run config file {path} is the {data.get('phase')!r} phase's, not {phase}'s")
        return cls(run=run, task_config=task)


def live_tracking_settings(config: dict[str, Any]) -> dict[str, Any] | None:
    """What live MLflow logging from a training job reads (``experiment``, ``results_dir``,
    ``tracking``), or None when ``tracking.live`` is off. Kept out of the run config files: where
    a run is logged changes none of its numbers, so it must not rewrite them (nor rerun training);
    the workflow passes it as ``--live-tracking JSON`` instead."""
    tracking = config.get("tracking") or {}
    if not tracking.get("live"):
        return None
    return {"experiment": config["experiment"], "results_dir": config["results_dir"], "tracking": dict(tracking)}


def parse_live_tracking(text: str) -> dict[str, Any]:
    """``--live-tracking``'s JSON, checked (the error names the option)."""
    try:
        settings = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--live-tracking is not JSON ({exc}): {text[:200]}") from None
    if not isinstance(settings, dict) or not {"experiment", "tracking"} <= set(settings):
        raise ConfigError(f"--live-tracking needs a JSON object with 'experiment' and 'tracking': {text[:200]}")
    return settings
