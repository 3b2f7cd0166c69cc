"""GET /metrics and the JSON logs (`--log-json`) of a real server after one run and one response on the
bundled model: the counters and histograms that moved, the routes by template, the scrape-time gauges,
the key /metrics wants, and one JSON line per request and per job end."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.contract.helpers import MODEL
from tests.support import KEY_A, ServerProcess

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("metrics"), args=["--log-json"])
    yield server
    server.stop()


def _scrape(server: ServerProcess) -> dict[str, list]:
    """The samples of /metrics by family name."""
    got = httpx.get(f"{server.base_url}/metrics", headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(got.text)}


def _value(samples: list, name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def test_a_run_and_a_response_show_in_the_metrics_and_the_logs(metered):
    client = openai.OpenAI(base_url=f"{metered.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)
    assistant = client.beta.assistants.create(model=MODEL, temperature=0)  # the same words every time
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "Say hello."}]},
        max_completion_tokens=16,
        poll_interval_ms=100,
    )
    assert run.status in ("completed", "incomplete"), run.last_error
    response = client.responses.create(model=MODEL, input="hi", max_output_tokens=16, temperature=0)
    assert response.status in ("completed", "incomplete"), response.error

    families = _scrape(metered)
    finished = families["assistd_jobs_finished"]
    assert _value(finished, "assistd_jobs_finished_total", api="runs", model=MODEL, status=run.status) == 1
    assert (
        _value(finished, "assistd_jobs_finished_total", api="responses", model=MODEL, status=response.status)
        == 1
    )
    ttft = families["assistd_time_to_first_token_seconds"]
    assert _value(ttft, "assistd_time_to_first_token_seconds_count") >= 2
    assert _value(ttft, "assistd_time_to_first_token_seconds_count", api="responses") >= 1
    assert _value(families["assistd_queue_wait_seconds"], "assistd_queue_wait_seconds_count") == 2
    assert _value(families["assistd_tokens_per_second"], "assistd_tokens_per_second_count") >= 1
    assert _value(families["assistd_tokens"], "assistd_tokens_total", kind="completion") > 0
    assert _value(families["assistd_job_duration_seconds"], "assistd_job_duration_seconds_count") == 2

    requests = families["assistd_http_requests"]
    routes = {s.labels["route"] for s in requests}
    assert "/v1/threads/{thread_id}/runs/{run_id}" in routes  # the poll, by its template
    assert _value(requests, "assistd_http_requests_total", route="/v1/responses", status="200") == 1
    ids = [
        v
        for s in requests
        for v in s.labels.values()
        if re.search(r"(thread|run|resp|asst)_[0-9A-Za-z]{6}", v)
    ]
    assert not ids  # never an id as a label

    assert [s.labels for s in families["assistd_queue_depth"]] == [{"api": "runs"}, {"api": "responses"}]
    assert _value(families["assistd_queue_depth"], "assistd_queue_depth") == 0
    assert [s.value for s in families["assistd_database_up"]] == [1]
    busy = [s for s in families["assistd_engine_slots_busy"] if s.labels == {"model": MODEL}]
    assert len(busy) == 1 and busy[0].value == 0
    assert _value(families["assistd_engine_slots"], "assistd_engine_slots", model=MODEL) >= 1
    for name in ("assistd_database_retries", "assistd_chroma_retries", "assistd_ingestion_queue"):
        assert name in families
    # the process's own figures (sizing: its CPU against the tokens and jobs it counted)
    assert _value(families["process_cpu_seconds"], "process_cpu_seconds_total") > 0
    assert _value(families["process_resident_memory_bytes"], "process_resident_memory_bytes") > 10_000_000

    lines = [json.loads(line) for line in metered.log().splitlines() if line.startswith("{")]
    jobs = {
        line.get("run_id") or line.get("response_id"): line for line in lines if line["event"] == "job_end"
    }
    assert jobs[run.id]["thread_id"] == run.thread_id and jobs[run.id]["model"] == MODEL
    assert jobs[run.id]["status"] == run.status and jobs[run.id]["completion_tokens"] > 0
    assert jobs[run.id]["queue_wait_ms"] >= 0 and jobs[run.id]["ttft_ms"] >= 0
    assert jobs[response.id]["api"] == "responses"
    access = [line for line in lines if line["event"] == "http_request"]
    created = [a for a in access if a["route"] == "/v1/responses" and a["method"] == "POST"]
    assert created and created[0]["status"] == 200 and created[0]["project"] == "project-a"
    assert created[0]["duration_ms"] > 0


def test_metrics_want_an_api_key(metered):
    assert httpx.get(f"{metered.base_url}/metrics", timeout=30).status_code == 401
    wrong = httpx.get(f"{metered.base_url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401
