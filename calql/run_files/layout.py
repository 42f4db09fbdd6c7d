"""The run-folder layout, defined once (docs/design.md, "Run files").

A run is one (task, method, seed). Its files live in ``<runs_dir>/<task>/<method>/seed<seed>/``
(RUN), one folder per phase (``RUN/pretrain``, ``RUN/finetune``), and ``runs_dir`` is
``<results_dir>/runs``. Inside a phase folder: ``metrics.csv`` (one row per evaluation),
``final.pt`` (the trained agent), ``run.json`` (written last: status, config, provenance),
``checkpoints/`` (resume checkpoints, deleted when the phase completes) and, after a failure,
``error.json``. The workflow's file patterns, training, the MLflow import and the analysis all
take their paths from here, so the layout changes here and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

#: The runs folder inside the config's results_dir.
RUNS_SUBDIR = "runs"
#: The phases of a run, in order; each has its own folder RUN/<phase>/ and budget section in the
#: run config. (An agent's own "offline"/"online" modes are :data:`calql.agents.base.AGENT_MODES`.)
PHASES = ("pretrain", "finetune")
#: Files of a phase folder.
METRICS_CSV = "metrics.csv"
RUN_JSON = "run.json"
FINAL_PT = "final.pt"
ERROR_JSON = "error.json"
#: Resume checkpoints of an unfinished phase: ``last.pt`` and the one before, ``prev.pt``.
CHECKPOINTS_DIR = "checkpoints"
LAST_PT = "last.pt"
PREV_PT = "prev.pt"


def phase_file(run_dir: str | Path, phase: str, name: str) -> str:
    """``RUN/<phase>/<name>`` as a string; ``run_dir`` may hold Snakemake wildcards."""
    return f"{str(run_dir).rstrip('/')}/{phase}/{name}"


def runs_dir_of(results_dir: str | Path) -> str:
    """``<results_dir>/runs``, as a string (also a Snakemake path prefix)."""
    return f"{str(results_dir).rstrip('/')}/{RUNS_SUBDIR}"


def raw_dataset_of(results_dir: str | Path, task: str) -> str:
    """``<results_dir>/datasets/<task>.hdf5``, the ``dataset`` rule's output (``task`` may be the
    Snakemake wildcard ``{task}``); the source checks skip a task whose file is already there."""
    return f"{str(results_dir).rstrip('/')}/datasets/{task}.hdf5"


@dataclass(frozen=True)
class RunKey:
    """One run: (task, method, seed); its folder is ``runs_dir / key.name``."""

    task: str
    method: str
    seed: int

    #: RUN relative to the runs folder as a format string of the fields; with the same names as
    #: the workflow's wildcards it is also the Snakemake pattern.
    PATTERN: ClassVar[str] = "{task}/{method}/seed{seed}"
    _REGEX: ClassVar[re.Pattern[str]] = re.compile(
        "^" + PATTERN.format(task=r"(?P<task>[^/]+)", method=r"(?P<method>[^/]+)", seed=r"(?P<seed>\d+)") + "$"
    )

    @property
    def name(self) -> str:
        """``<task>/<method>/seed<seed>``: RUN relative to the runs folder, also the MLflow run key."""
        return self.PATTERN.format(task=self.task, method=self.method, seed=int(self.seed))

    def dir(self, runs_dir: str | Path) -> Path:
        """RUN."""
        return Path(runs_dir) / self.name

    @classmethod
    def parse(cls, name: str) -> RunKey | None:
        """The key of a relative run folder name (``task/method/seed3``), None if it is not one."""
        match = cls._REGEX.match(name)
        if match is None:
            return None
        return cls(match["task"], match["method"], int(match["seed"]))

    @classmethod
    def existing(cls, runs_dir: str | Path) -> list[RunKey]:
        """Runs that have a folder under ``runs_dir``, sorted by (task, method, seed)."""
        root = Path(runs_dir)
        if not root.is_dir():
            return []
        found = []
        for folder in root.glob(cls.PATTERN.format(task="*", method="*", seed="*")):
            key = cls.parse(folder.relative_to(root).as_posix())
            if key is not None and folder.is_dir():
                found.append(key)
        return sorted(found, key=lambda k: (k.task, k.method, k.seed))
