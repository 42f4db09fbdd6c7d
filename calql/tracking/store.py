"""Where and how runs go into MLflow: the store URI, the experiment, one run per (task, method, seed).

Both phases of a (task, method, seed) share one MLflow run, found by its ``calql.run_key`` tag, so
re-importing never duplicates runs. Metric names are namespaced by phase (``pretrain/score``,
``finetune/train/critic_loss``) and logged at step = ``grad_step`` (pretrain) or ``env_steps``
(finetune).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calql.locking import exclusive_lock
from calql.run_files import RunKey
from calql.training.run_config import run_algorithm, run_variant

if TYPE_CHECKING:  # mlflow takes ~2 s to import: only where it is used
    from mlflow import MlflowClient

TAG_KEY = "calql.run_key"
TAG_SIGNATURE = "calql.import_signature"
TAG_SOURCE = "calql.source"  # "live" or "import"


def default_uri(config: dict[str, Any]) -> str:
    """``tracking.uri`` or ``sqlite:///<results_dir>/mlflow/mlflow.db`` (absolute path)."""
    uri = (config.get("tracking") or {}).get("uri")
    if uri:
        return str(uri)
    path = (Path(config.get("results_dir", "results")) / "mlflow" / "mlflow.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def artifact_location(config: dict[str, Any], uri: str) -> str | None:
    """Artifact root for a new experiment: ``tracking.artifact_location`` or, for local stores,
    ``<results_dir>/mlflow/artifacts`` (MLflow's default would be ./mlruns of the working dir)."""
    loc = (config.get("tracking") or {}).get("artifact_location")
    if loc:
        return str(loc)
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        return (Path(config.get("results_dir", "results")) / "mlflow" / "artifacts").resolve().as_uri()
    return None  # a tracking server decides


def run_key(task: str, method: str, seed: int) -> str:
    """The MLflow run key of a run: its folder name under the runs folder."""
    return RunKey(task, method, int(seed)).name


def run_tags(run_config: dict[str, Any], seed: int) -> dict[str, str]:
    """Tags to group the runs table by: task, method, seed, and the algorithm and variant. A named
    variant (e.g. calql-corl) runs an algorithm (calql) with overrides; a method listed by name
    is its own algorithm, without overrides (``calql.agents.registry``)."""
    method = str(run_config["method"])
    return {
        "task": str(run_config["task"]),
        "method": method,
        "seed": str(seed),
        "algorithm": run_algorithm(run_config),
        "variant": method,
        "variant_overrides": json.dumps(run_variant(run_config), sort_keys=True),
    }


def client_for(uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(client: MlflowClient, name: str, artifact_root: str | None) -> str:
    """The experiment's id, creating it if needed; another process creating it at the same moment
    ("already exists") is not an error."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_root)
        except MlflowException:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """One writer at a time on a local SQLite store (``<db>.lock``), waiting for the others.

    MLflow creates and migrates a new store's schema without a lock (concurrent first uses fail
    with "duplicate column name"), and two imports of one run would both create it. A tracking
    server serialises its own database, so nothing is locked for one.
    """
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    with exclusive_lock(path.with_name(path.name + ".lock"), "calql track", busy="is being written by"):
        yield


def find_runs(client: MlflowClient, exp_id: str, key: str) -> list[Any]:
    """The active runs with this run key, newest first (more than one only after a race)."""
    return list(
        client.search_runs(
            [exp_id],
            filter_string=f"tags.`{TAG_KEY}` = '{key}'",
            order_by=["attributes.start_time DESC"],
            max_results=100,
        )
    )


def find_run(client: MlflowClient, exp_id: str, key: str) -> Any | None:
    """The newest active run with this run key, or None."""
    runs = find_runs(client, exp_id, key)
    return runs[0] if runs else None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"agent.cql_min_q_weight": "5.0", ...}`` for MLflow params."""
    out: dict[str, str] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{name}."))
        else:
            out[name] = str(v)
    return out


def row_metrics(row: dict[str, Any], phase: str) -> dict[str, float]:
    """The numeric columns of a metrics.csv row, named ``<phase>/<column>``."""
    skip = {"task", "method", "seed", "phase", "grad_step", "env_steps"}
    out = {}
    for k, v in row.items():
        if k in skip or v is None or isinstance(v, str):
            continue
        out[f"{phase}/{k}"] = float(v)
    return out


def set_quiet_http() -> None:
    """Fail fast instead of MLflow's minutes of HTTP retries (a training job must not wait)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
