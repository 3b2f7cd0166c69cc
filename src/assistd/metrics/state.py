"""The gauges read when Prometheus scrapes, never kept in sync by hand: jobs not ended and the queue depth
(one COUNT ... GROUP BY per job table, on its status index), the ingestion queue (one COUNT), the engine slots
each loaded model has busy (its FairGate), code interpreter sessions alive, and the retries this process
made (storage/retry.py). The database's rows are the whole cluster's: every node reports the same counts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func
from sqlmodel import select

from assistd.llm.registry import ModelRegistry
from assistd.storage import retry
from assistd.storage.db import Database
from assistd.storage.responses import ResponseRow
from assistd.storage.runs import RunRow
from assistd.storage.vector_store_files import VectorStoreFileRow

log = logging.getLogger("assistd.metrics")

ACTIVE = ("queued", "in_progress", "requires_action", "cancelling")  # not ended
TABLES = {"runs": RunRow, "responses": ResponseRow}


class StateCollector:
    def __init__(self, db: Database, registry: ModelRegistry, extras: dict[str, Any]) -> None:
        self.db = db
        self.registry = registry
        self.extras = extras  # the code interpreter, file_search (either may be absent)

    def describe(self) -> list[Metric]:
        return []  # registering it must not query the database

    def collect(self) -> Iterator[Metric]:
        yield from self._rows()
        yield from self._engines()
        yield from self._sessions()
        yield from self._retries()

    def _rows(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "assistd_jobs", "Jobs not ended, by status (cluster-wide)", labels=["api", "model", "status"]
        )
        depth = GaugeMetricFamily(
            "assistd_queue_depth",
            "Jobs queued: waiting for a worker or a model slot (cluster-wide)",
            labels=["api"],
        )
        ingest = GaugeMetricFamily(
            "assistd_ingestion_queue", "Vector store files waiting for or being indexed (cluster-wide)"
        )
        up = GaugeMetricFamily("assistd_database_up", "1 when the database answered this scrape's counts")
        try:
            with self.db.session() as s:
                for api, table in TABLES.items():
                    queued = 0
                    rows = s.exec(
                        select(table.status, table.model, func.count())
                        .where(table.status.in_(ACTIVE))  # type: ignore[attr-defined]
                        .group_by(table.status, table.model)
                    )
                    for status, model, count in rows:
                        jobs.add_metric([api, model, status], count)
                        queued += count if status == "queued" else 0
                    depth.add_metric([api], queued)
                files = s.exec(select(func.count()).where(VectorStoreFileRow.status == "in_progress")).one()
                ingest.add_metric([], files)
        except Exception as exc:  # a scrape answers all the same; the gauge says why the counts are missing
            log.warning("metrics: the database did not answer the scrape's counts: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield from (jobs, depth, ingest, up)

    def _engines(self) -> Iterator[Metric]:
        busy = GaugeMetricFamily(
            "assistd_engine_slots_busy", "Generation slots in use, per model loaded here", labels=["model"]
        )
        slots = GaugeMetricFamily(
            "assistd_engine_slots",
            "Generation slots (the engine's parallel sequences), per model",
            labels=["model"],
        )
        waiting = GaugeMetricFamily(
            "assistd_engine_waiting", "Model turns here waiting for a slot of their model", labels=["model"]
        )
        for name in list(self.registry.catalog.entries):
            gate = self.registry.gate(name)
            if gate is None:
                continue  # not loaded by this process (yet)
            busy.add_metric([name], gate.busy)
            slots.add_metric([name], gate.slots)
            waiting.add_metric([name], gate.waiting)
        yield from (busy, slots, waiting)

    def _sessions(self) -> Iterator[Metric]:
        interpreter = self.extras.get("code_interpreter")
        if interpreter is not None:
            live = GaugeMetricFamily(
                "assistd_code_interpreter_sessions", "Code interpreter kernels alive here"
            )
            live.add_metric([], len(interpreter.sessions))
            yield live

    def _retries(self) -> Iterator[Metric]:
        counts = dict(retry.RETRIES)
        for kind, what in (("database", "the database"), ("chroma", "Chroma")):
            family = CounterMetricFamily(
                f"assistd_{kind}_retries", f"Calls to {what} retried after a transient failure (this process)"
            )
            family.add_metric([], counts.get(kind, 0))
            yield family
