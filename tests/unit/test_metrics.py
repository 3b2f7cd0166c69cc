"""Metrics of one container (assistd/metrics) on the scripted engine: a run's reply timing, its end
counted once, the scrape-time gauges from one aggregate query per table, retries counted by kind, and
the JSON job line only with --log-json."""

from __future__ import annotations

import json
import logging
import threading

from litestar.testing import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from assistd.app import create_app
from assistd.config import Settings
from assistd.metrics import Metrics
from assistd.metrics.logs import JOBS_LOG, JsonLines
from assistd.metrics.state import StateCollector
from assistd.storage import retry
from tests.unit.engine_support import MODEL, Recorder, build_rig


def _samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, tuple]:
    return name, tuple(sorted(labels.items()))


def _metered_rig(tmp_path, replies, log_json=False):
    rig = build_rig(tmp_path, replies)
    metrics = Metrics(log_json=log_json)
    rig.executor.loop.metrics = metrics
    rig.store.queue.on_end.append(metrics.job_ended)
    metrics.registry.register(StateCollector(rig.db, rig.executor.loop.registry, {}))
    return rig, metrics


def test_a_run_is_timed_and_counted_once(tmp_path):
    rig, metrics = _metered_rig(tmp_path, ["Paris is nice."])
    run = rig.create_run(rig.thread(), rig.assistant())
    queued = _samples(metrics)
    assert queued[_key("assistd_queue_depth", api="runs")] == 1
    assert queued[_key("assistd_jobs", api="runs", model=MODEL, status="queued")] == 1
    rig.executor.execute(run.id, threading.Event())
    assert not rig.store.finish(run.id, "cancelled")  # ended already: not counted again
    got = _samples(metrics)
    job = {"api": "runs", "model": MODEL}
    assert got[_key("assistd_jobs_finished_total", **job, status="completed")] == 1
    assert got[_key("assistd_time_to_first_token_seconds_count", **job)] == 1
    assert got[_key("assistd_queue_wait_seconds_count", **job)] == 1
    assert got[_key("assistd_tokens_per_second_count", **job)] == 1
    assert got[_key("assistd_tokens_total", **job, kind="completion")] == 3
    assert got[_key("assistd_queue_depth", api="runs")] == 0
    assert got[_key("assistd_engine_slots_busy", model=MODEL)] == 0
    assert got[_key("assistd_database_up")] == 1
    assert not metrics._traces  # forgotten at its end


def test_the_job_line_only_with_log_json(tmp_path):
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonLines().format(record))

    handler, level = Keep(), JOBS_LOG.level
    JOBS_LOG.addHandler(handler)
    JOBS_LOG.setLevel(logging.INFO)
    try:
        for log_json in (False, True):
            rig, _ = _metered_rig(tmp_path / str(log_json), ["ok"], log_json=log_json)
            run = rig.create_run(rig.thread(), rig.assistant())
            rig.executor.execute(run.id, threading.Event())
    finally:
        JOBS_LOG.removeHandler(handler)
        JOBS_LOG.setLevel(level)
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["event"] == "job_end" and line["run_id"] == run.id and line["status"] == "completed"
    assert line["thread_id"] == run.thread_id and line["completion_tokens"] == 1
    assert line["ttft_ms"] >= 0 and line["queue_wait_ms"] >= 0 and line["duration_ms"] >= 0


def test_retries_are_counted_by_kind(tmp_path):
    metrics = Metrics()
    rig = build_rig(tmp_path, [])
    metrics.registry.register(StateCollector(rig.db, rig.executor.loop.registry, {}))
    before = _samples(metrics)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("connection refused")
        return "ok"

    assert retry.retrying(flaky, what="test", first_delay=0.001, kind="chroma") == "ok"
    after = _samples(metrics)
    assert after[_key("assistd_chroma_retries_total")] - before[_key("assistd_chroma_retries_total")] == 2
    assert after[_key("assistd_database_retries_total")] == before[_key("assistd_database_retries_total")]


def test_a_database_that_does_not_answer_leaves_the_scrape_up(tmp_path):
    rig = build_rig(tmp_path, [])
    metrics = Metrics()
    metrics.registry.register(StateCollector(rig.db, rig.executor.loop.registry, {}))
    rig.db.dispose()
    (tmp_path / "engine.db").unlink()
    (tmp_path / "engine.db").mkdir()  # no longer a database file
    got = _samples(metrics)
    assert got[_key("assistd_database_up")] == 0


def test_metrics_public_and_off(tmp_path):
    keys = {"sk-x": "p"}  # API nodes: nothing runs in the background
    public = create_app(Settings(data_dir=tmp_path / "a", role="api", api_keys=keys, metrics_public=True))
    with TestClient(public) as client:
        got = client.get("/metrics")
        assert got.status_code == 200 and "assistd_queue_depth" in got.text
    off = create_app(Settings(data_dir=tmp_path / "b", role="api", api_keys=keys, metrics=False))
    with TestClient(off) as client:
        assert client.get("/metrics", headers={"Authorization": "Bearer sk-x"}).status_code == 404


def test_a_run_is_counted_before_its_end_reaches_a_stream(tmp_path):
    """A client that saw the run's end and then scrapes /metrics finds it counted: the end is reported at the
    commit, before the bus hands the end event to the streams."""
    rig, _ = _metered_rig(tmp_path, ["Paris is nice."])
    run = rig.create_run(rig.thread(), rig.assistant())
    order: list[str] = []
    rig.store.queue.on_end.append(lambda end: order.append(f"counted {end.status}"))
    recorder = Recorder(rig.bus, run.id)
    push = recorder.sub.push
    recorder.sub.push = lambda event: (order.append(event.name), push(event))
    try:
        rig.executor.execute(run.id, threading.Event())
    finally:
        recorder.close()
    assert order.index("counted completed") < order.index("thread.run.completed") == len(order) - 1
