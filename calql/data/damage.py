"""A dataset file of ours that cannot be used is moved aside, so that the next run rebuilds it.

A damaged HDF5 file (a bad header or superblock, a broken metadata attribute, arrays that no
longer match their recorded checksum) would otherwise fail every job that reads it, on every
rerun, because Snakemake sees the file present and never rebuilds it. The job that finds the
damage renames the file to ``<name>.corrupt-<UTC time>`` (kept, never deleted) and fails with a
:class:`DatasetError` naming both paths and the commands that rebuild it; the workflow's next run
finds the output missing and rebuilds it (the ``dataset`` job for a raw file, ``label`` for a
labeled one), then reruns what depends on it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from calql.atomic import set_aside
from calql.data.format import Dataset, load_dataset
from calql.errors import DatasetError

log = logging.getLogger(__name__)

#: How each of our dataset files is rebuilt by hand: the workflow rule and its command.
REBUILD = {
    "dataset": "calql dataset --config <config> --task {task} --out {path}",
    "label": "calql label --config <config> --task {task} --dataset <raw dataset> --out {path}",
}


def rebuild_advice(path: Path, task: str, rule: str) -> str:
    """How to rebuild ``path``: rerun the workflow, or the rule's command by hand."""
    made_by = "regenerates or downloads" if rule == "dataset" else "rebuilds"
    return (
        f"rerun the same `snakemake` command (its `{rule}` job {made_by} the file; the jobs of "
        f"{task} that depend on it then run again), or by hand: `{REBUILD[rule].format(task=task, path=path)}`"
    )


def unusable_dataset(path: Path, exc: DatasetError, task: str, rule: str) -> DatasetError:
    """Move the damaged ``path`` aside and return the error that says where it went and how to
    rebuild it. Several jobs of one task may find the same damage at once; the later ones say
    which job moved it."""
    advice = rebuild_advice(path, task, rule)
    if not path.exists():
        moved = sorted(path.parent.glob(f"{path.name}.corrupt-*"))
        where = f" (another job moved it aside as corrupt: {moved[-1]})" if moved else ""
        return DatasetError(f"{exc}{where}. To rebuild it, {advice}")
    try:
        aside = set_aside(path, "corrupt")
    except FileNotFoundError:  # another job of the same task moved it a moment ago
        return DatasetError(f"{exc}; another job moved it aside. To rebuild it, {advice}")
    log.error("moved the unusable dataset %s aside to %s", path, aside)
    return DatasetError(f"{exc}. Moved it aside to {aside}; to rebuild it, {advice}")


def load_or_set_aside(path: Path, task: str, rule: str) -> Dataset:
    """:func:`load_dataset`, but a damaged file is moved aside (see the module docstring)."""
    try:
        return load_dataset(path)
    except DatasetError as exc:
        raise unusable_dataset(Path(path), exc, task, rule) from exc
