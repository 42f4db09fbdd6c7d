"""Live MLflow logging from a training job (``tracking.live: true``), best effort.

Each evaluation row goes to MLflow in ONE ``log_batch`` call. A failed call (a busy server,
SQLite locked) is retried a few times, and rows that still could not be sent stay queued and go
with the next row or at the end, so a transient error loses no metric. If the server cannot be
reached when the job starts, live logging is off for the job (one warning). Either way the run
files are the record, and ``calql track`` imports them later (replacing the live run, so nothing
is counted twice).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from calql.tracking.store import (
    TAG_KEY,
    TAG_SOURCE,
    artifact_location,
    client_for,
    default_uri,
    experiment_id,
    find_run,
    flatten,
    row_metrics,
    run_key,
    run_tags,
    set_quiet_http,
)

log = logging.getLogger(__name__)

#: Seconds to wait before each retry of a failed log call.
RETRY_DELAYS = (0.5, 2.0, 5.0)


class LiveRun:
    """Logs one phase's rows to the (task, method, seed) MLflow run; never raises."""

    def __init__(self, config: dict[str, Any], run_config: dict[str, Any], phase: str, seed: int):
        self.phase = phase
        self.client: Any = None
        self.run_id: str | None = None
        self.pending: list[Any] = []  # metrics not yet accepted by the server
        self._failing = False
        try:
            set_quiet_http()
            from mlflow.entities import Param, RunTag

            uri = default_uri(config)
            self.client = client_for(uri)
            exp = experiment_id(self.client, config["experiment"], artifact_location(config, uri))
            key = run_key(run_config["task"], run_config["method"], seed)
            existing = find_run(self.client, exp, key)
            if existing is not None:
                self.run_id = existing.info.run_id
            else:
                tags = {
                    TAG_KEY: key,
                    TAG_SOURCE: "live",
                    **run_tags(run_config, seed),
                }
                self.run_id = self.client.create_run(exp, tags=tags, run_name=key.replace("/", "-")).info.run_id
                params = flatten(run_config)
                items = [Param(k, v[:6000]) for k, v in params.items()]
                for i in range(0, len(items), 100):
                    self.client.log_batch(self.run_id, params=items[i : i + 100])
            self.client.log_batch(self.run_id, tags=[RunTag(f"phase.{phase}", "running")])
            log.info("live MLflow logging to %s (run %s)", uri, self.run_id)
        except Exception as exc:  # noqa: BLE001 - tracking must never stop training
            self._disable(exc)

    def _disable(self, exc: BaseException) -> None:
        log.warning(
            "MLflow live logging disabled (%s: %s); the run files are still written and "
            "`calql track` can import them later",
            type(exc).__name__,
            exc,
        )
        self.client = None

    def _send(self, **batch: Any) -> bool:
        """One log_batch, retried (once only during an outage); True when the server took it."""
        for delay in (*(() if self._failing else RETRY_DELAYS), None):
            try:
                self.client.log_batch(self.run_id, **batch)
            except Exception as exc:  # noqa: BLE001 - tracking must never stop training
                if delay is not None:
                    time.sleep(delay)
                    continue
                if not self._failing:
                    log.warning(
                        "MLflow live logging failed (%s: %s); keeping the rows and retrying with the next one",
                        type(exc).__name__,
                        exc,
                    )
                self._failing = True
                return False
            if self._failing:
                log.info("MLflow live logging works again")
            self._failing = False
            return True
        return False

    def _flush(self) -> None:
        while self.pending:
            chunk = self.pending[:1000]  # MLflow's limit per log_batch
            if not self._send(metrics=chunk):
                return
            del self.pending[: len(chunk)]

    def log_row(self, row: dict[str, Any], step: int) -> None:
        if self.client is None or self.run_id is None:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.pending += [Metric(k, v, ts, int(step)) for k, v in row_metrics(row, self.phase).items()]
        self._flush()

    def finish(self, ok: bool) -> None:
        if self.client is None or self.run_id is None:
            return
        from mlflow.entities import RunTag

        self._flush()
        if self.pending:
            log.warning(
                "%d live metric value(s) could not be sent; `calql track` imports them from the run files",
                len(self.pending),
            )
        if not self._send(tags=[RunTag(f"phase.{self.phase}", "complete" if ok else "failed")]):
            return
        try:
            if self.phase == "finetune" or not ok:
                self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")
        except Exception as exc:  # noqa: BLE001
            self._disable(exc)


def live_logger(config: dict[str, Any], run_config: dict[str, Any], phase: str, seed: int) -> LiveRun | None:
    """A :class:`LiveRun` when ``tracking.live`` is on, else None."""
    if not (config.get("tracking") or {}).get("live"):
        return None
    return LiveRun(config, run_config, phase, seed)
