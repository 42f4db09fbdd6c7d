"""Dataset sources. Each module exposes ``fetch(task, cache_dir) -> Dataset`` returning the raw
(unlabeled) dataset with its metadata filled in; :func:`fetch_dataset` dispatches on
``task.source['kind']``.

Metadata every source sets (see ``calql.data.format``): ``source`` (kind and its config),
``env_id``, ``env_kwargs``, ``obs_layout``, ``ref_min_score``/``ref_max_score`` (when known),
``generator_seed`` (generated only) and ``provenance`` (``calql.provenance.provenance()``: git commit, package versions).

What can be checked of a source without running its job (files present, ids well-formed, the
environment registered) is checked by :func:`calql.data.sources.preflight.check_sources`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from calql.config import TaskSpec
from calql.data.format import Dataset
from calql.errors import ConfigError, suggest

#: kind -> module under calql.data.sources
SOURCE_MODULES = {
    "generated": "generated",
    "d4rl": "d4rl",
    "minari": "minari_source",
    "file": "local_file",
    "awac_npy": "awac_npy",
}


def local_path(value: object) -> Path:
    """A source's local file path (``file``'s ``path``, ``awac_npy``'s ``expert`` and ``bc``), as
    every reader and check resolves it: ``~`` expanded, and a relative path taken from the working
    directory (where Snakemake or ``calql`` runs), not from the config file's folder, so that one
    config means the same files from ``snakemake --directory`` and from ``calql dataset``."""
    return Path(str(value)).expanduser()


def fetch_dataset(task: TaskSpec, cache_dir: str | Path) -> Dataset:
    kind = task.source.get("kind")
    if kind not in SOURCE_MODULES:
        raise ConfigError(
            f"task '{task.name}': unknown source kind '{kind}' "
            f"(known: {', '.join(SOURCE_MODULES)}).{suggest(str(kind), SOURCE_MODULES)}"
        )
    module = importlib.import_module(f"calql.data.sources.{SOURCE_MODULES[kind]}")
    return module.fetch(task, Path(cache_dir))
