"""Import finished runs' files into an MLflow store, in one process (``calql track``).

Training jobs on many nodes never touch the (SQLite) store; this one local job reads every
completed ``RUN/<phase>/run.json`` under the runs folder and creates one MLflow run per
(task, method, seed) holding both phases. Idempotent: a run whose files did not change since the
last import (same ``calql.import_signature`` tag) is skipped; a changed one (a new phase finished,
a rerun, or a run logged live) is replaced, so the store never holds duplicates.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calql.errors import CalqlError
from calql.run_files import FINAL_PT, METRICS_CSV, PHASES, RUN_JSON, read_metrics
from calql.tracking.store import (
    TAG_KEY,
    TAG_SIGNATURE,
    TAG_SOURCE,
    artifact_location,
    client_for,
    experiment_id,
    find_runs,
    flatten,
    row_metrics,
    run_key,
    run_tags,
    store_lock,
)

log = logging.getLogger(__name__)

#: MLflow's per-call limit of metrics in log_batch.
_BATCH = 1000


@dataclass
class RunFiles:
    """The completed phases of one (task, method, seed) run directory."""

    task: str
    method: str
    seed: int
    phases: dict[str, Path] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return run_key(self.task, self.method, self.seed)

    def signature(self) -> str:
        """Changes whenever any imported file changes."""
        h = hashlib.sha256()
        for phase in PHASES:
            if phase in self.phases:
                d = self.phases[phase]
                h.update(phase.encode())
                h.update((d / RUN_JSON).read_bytes())
                h.update((d / METRICS_CSV).read_bytes())
        return h.hexdigest()[:16]


def discover(runs_dir: Path) -> list[RunFiles]:
    """Every run with at least one completed phase, sorted by key; incomplete phases are ignored."""
    found: dict[str, RunFiles] = {}
    for run_json in sorted(runs_dir.glob(f"**/{RUN_JSON}")):
        phase_dir = run_json.parent
        if phase_dir.name not in PHASES or not (phase_dir / METRICS_CSV).exists():
            continue
        try:
            record = json.loads(run_json.read_text())
        except json.JSONDecodeError as exc:
            log.warning("skipping %s: not valid JSON (%s)", run_json, exc)
            continue
        if record.get("status") != "complete":
            continue
        rf = RunFiles(record["task"], record["method"], int(record["seed"]))
        rf = found.setdefault(rf.key, rf)
        rf.phases[phase_dir.name] = phase_dir
        rf.records[phase_dir.name] = record
    return [found[k] for k in sorted(found)]


def _phase_end_ms(phase_dir: Path) -> int:
    """When a phase finished: its run.json is written last, so its modification time."""
    return int((phase_dir / RUN_JSON).stat().st_mtime * 1000)


def _phase_start_ms(phase_dir: Path, record: dict[str, Any]) -> int:
    return _phase_end_ms(phase_dir) - int(1000 * float(record.get("wall_time_s") or 0.0))


def _dataset_input(task: str, record: dict[str, Any]) -> Any:
    """The labeled dataset the run trained on, as an MLflow run input (its checksum is the digest,
    so runs on the same data group together in the UI)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    meta = record.get("dataset") or {}
    checksum = str(meta.get("checksum") or "unknown")
    source = {"env_id": meta.get("env_id"), **(meta.get("source") or {})}
    dataset = Dataset(
        name=f"{task}-labeled",
        digest=checksum[:32],  # MLflow's digest column holds 36 characters; the full one is in the profile
        source_type="calql",
        source=json.dumps(source, sort_keys=True, default=str),
        profile=json.dumps({"sha256": checksum}),
    )
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])


def _import_one(client: Any, exp_id: str, rf: RunFiles, log_checkpoints: bool) -> str:
    from mlflow.entities import Metric, Param, RunTag

    phases = [p for p in PHASES if p in rf.phases]
    last = rf.records[phases[-1]]
    run_config = last.get("config") or {}
    tags = {
        TAG_KEY: rf.key,
        TAG_SOURCE: "import",
        TAG_SIGNATURE: rf.signature(),
        **run_tags({"task": rf.task, "method": rf.method, **run_config}, rf.seed),
        "phases": ",".join(phases),
        "git_commit": str(last.get("git_commit")),
        "config_hash": str(last.get("run_config_hash")),
        "mlflow.runName": rf.key.replace("/", "-"),
    }
    for p in phases:
        tags[f"git_commit.{p}"] = str(rf.records[p].get("git_commit"))
    # The training's own start and end (not the import's), so the UI shows how long it ran.
    first = phases[0]
    run = client.create_run(exp_id, start_time=_phase_start_ms(rf.phases[first], rf.records[first]), tags=tags)
    run_id = run.info.run_id
    client.log_inputs(run_id, datasets=[_dataset_input(rf.task, last)])
    params = flatten(run_config)
    items = [Param(k, v[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])
    metrics: list[Any] = []
    for phase in phases:
        d = rf.phases[phase]
        rows = read_metrics(d / METRICS_CSV)
        # timestamps reconstructed from the phase's end time and each row's wall time
        end_ms = _phase_end_ms(d)
        total_s = float(rf.records[phase].get("wall_time_s") or 0.0)
        for row in rows:
            step = int(row["env_steps"] if phase == "finetune" else row["grad_step"])
            ts = end_ms - int(1000 * (total_s - float(row.get("wall_time_s") or 0.0)))
            metrics += [Metric(k, v, ts, step) for k, v in row_metrics(row, phase).items()]
        client.log_artifact(run_id, str(d / METRICS_CSV), artifact_path=phase)
        client.log_artifact(run_id, str(d / RUN_JSON), artifact_path=phase)
        if log_checkpoints and (d / FINAL_PT).exists():
            client.log_artifact(run_id, str(d / FINAL_PT), artifact_path=phase)
    for i in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + _BATCH])
    client.log_dict(run_id, last.get("config") or {}, "run_config.json")
    client.log_batch(run_id, tags=[RunTag(f"phase.{p}", "complete") for p in phases])
    client.set_terminated(run_id, "FINISHED", end_time=_phase_end_ms(rf.phases[phases[-1]]))
    return run_id


def _keep_one(client: Any, exp_id: str, key: str) -> None:
    """Delete all but one active run of ``key`` (the smallest run id, so that concurrent imports
    into a tracking server all keep the same one)."""
    runs = sorted(find_runs(client, exp_id, key), key=lambda r: r.info.run_id)
    for extra in runs[1:]:
        log.warning("deleting duplicate MLflow run %s of %s (a concurrent import)", extra.info.run_id, key)
        client.delete_run(extra.info.run_id)


def import_runs(config: dict[str, Any], runs_dir: Path, uri: str, log_checkpoints: bool = True) -> dict[str, Any]:
    """Import every completed run under ``runs_dir``; returns a summary of what was done.

    Safe to run in several processes at once: on a local store they take turns
    (:func:`store_lock`); on a tracking server each then keeps one run per key.
    """
    if not runs_dir.is_dir():
        raise CalqlError(f"runs folder not found: {runs_dir}")
    with store_lock(uri):
        return _import_all(config, runs_dir, uri, log_checkpoints)


def _import_all(config: dict[str, Any], runs_dir: Path, uri: str, log_checkpoints: bool) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    client = client_for(uri)
    exp_id = experiment_id(client, config["experiment"], artifact_location(config, uri))
    summary: dict[str, Any] = {
        "uri": uri,
        "experiment": config["experiment"],
        "experiment_id": exp_id,
        "imported": [],
        "replaced": [],
        "unchanged": [],
    }
    for rf in discover(runs_dir):
        existing = find_runs(client, exp_id, rf.key)
        if len(existing) == 1 and existing[0].data.tags.get(TAG_SIGNATURE) == rf.signature():
            summary["unchanged"].append(rf.key)
            continue
        for old in existing:  # a live run, an older import, or duplicates: replaced by one fresh run
            client.delete_run(old.info.run_id)
        if existing:
            summary["replaced"].append(rf.key)
        try:
            run_id = _import_one(client, exp_id, rf, log_checkpoints)
        except MlflowException:
            # on a tracking server a concurrent import may have deleted this half-made duplicate
            if any(r.data.tags.get(TAG_SIGNATURE) == rf.signature() for r in find_runs(client, exp_id, rf.key)):
                log.warning("%s was imported by a concurrent `calql track`; keeping that run", rf.key)
                summary["unchanged"].append(rf.key)
                continue
            raise
        summary["imported"].append(rf.key)
        log.info("imported %s (%s) as MLflow run %s", rf.key, ",".join(rf.phases), run_id)
        _keep_one(client, exp_id, rf.key)
    return summary
