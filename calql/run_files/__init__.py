"""The run-file contract: what a training phase leaves on disk, and how it is named and read.

Training writes these files, the workflow's rules name them, and MLflow tracking and the analysis
read them; all four take the names, the ``metrics.csv`` format and the config hashes from here:

- :mod:`calql.run_files.layout`: the run folder (:class:`RunKey`), the phases (:data:`PHASES`) and
  the file names inside a phase folder;
- :mod:`calql.run_files.metrics_csv`: ``metrics.csv`` columns, writing and reading;
- :mod:`calql.run_files.hashing`: the config hashes a ``run.json``, a checkpoint and a rerun key
  record.

It imports nothing of calql but the atomic writer (:mod:`calql.atomic`), so every package can use
it without an import cycle.
"""

from calql.run_files.hashing import config_hash, digest, phase_config, phase_hash
from calql.run_files.layout import (
    CHECKPOINTS_DIR,
    ERROR_JSON,
    FINAL_PT,
    METRICS_CSV,
    PHASES,
    RUN_JSON,
    RUNS_SUBDIR,
    RunKey,
    phase_file,
    raw_dataset_of,
    runs_dir_of,
)
from calql.run_files.metrics_csv import TIMING_COLUMNS, read_metrics, write_metrics

__all__ = [
    "CHECKPOINTS_DIR",
    "ERROR_JSON",
    "FINAL_PT",
    "METRICS_CSV",
    "PHASES",
    "RUNS_SUBDIR",
    "RUN_JSON",
    "TIMING_COLUMNS",
    "RunKey",
    "config_hash",
    "digest",
    "phase_config",
    "phase_file",
    "phase_hash",
    "raw_dataset_of",
    "read_metrics",
    "runs_dir_of",
    "write_metrics",
]
