"""A remote engine that cannot serve: nothing listens at its url, it dies in the middle of a reply, or it
answers with errors. Each run ends `failed` with `server_error` and a message that names the model and the
engine's URL, never stuck in queued/in_progress; an engine restarted on its port serves the next run."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from tests.remote_engine import MODEL_FILE, EngineProcess, remote_server
from tests.support import KEY_A, free_port

pytestmark = [pytest.mark.contract, pytest.mark.model]

DEADLINE = 180.0
ENGINE_FAULT = "the engine ran out of memory for this request"


class FailingEngine(BaseHTTPRequestHandler):
    """An engine whose /health and /props answer (so the model is reached) but whose generation fails with
    a 500 and an OpenAI-style error body, as llama.cpp's server does on an internal error."""

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(200, {"status": "ok"})
        elif self.path == "/props":
            self._json(200, {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 2})
        else:
            self._json(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json(500, {"error": {"code": 500, "message": ENGINE_FAULT, "type": "server_error"}})

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def failing_engine():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FailingEngine)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    proc = EngineProcess(tmp_path_factory.mktemp("dying-engine"), parallel=2)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture(scope="module")
def server(tmp_path_factory, engine, failing_engine, closed_url):
    base = tmp_path_factory.mktemp("engine-failures")
    entries = {"nowhere": closed_url, "dying": engine.url, "erring": failing_engine}
    lines = []
    for name, url in entries.items():
        lines += ["[[models]]", f'name = "{name}"', f'url = "{url}"', f'path = "{MODEL_FILE}"', ""]
    models = base / "models.toml"
    models.write_text("\n".join(lines))
    proc = remote_server(base / "server", models)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)


def start_run(client: openai.OpenAI, model: str, text: str = "Say hello.", **fields):
    assistant = client.beta.assistants.create(model=model, instructions="Answer in one short sentence.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    return client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id, **fields)


def ended(client: openai.OpenAI, run):
    """The run once it has left queued/in_progress; fails if it stays there (stuck)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        run = client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)
        if run.status not in ("queued", "in_progress"):
            return run
        assert time.monotonic() < deadline, f"run stuck in {run.status}"
        time.sleep(0.1)


def assert_failed_naming(run, model: str, url: str) -> str:
    assert run.status == "failed", (run.status, run.last_error)
    assert run.last_error.code == "server_error"
    message = run.last_error.message
    assert f"'{model}'" in message and url in message, message
    assert run.failed_at and run.completed_at is None
    return message


def test_an_engine_url_where_nothing_listens_fails_the_run_naming_model_and_url(client, closed_url, tmp_path):
    for _ in range(2):  # every run tries the engine again, and fails the same clear way
        run = ended(client, start_run(client, "nowhere"))
        message = assert_failed_naming(run, "nowhere", closed_url)
        assert "could not be reached" in message
    # Once an engine listens there, the next run is served: a failed load is not remembered.
    late = EngineProcess(tmp_path, parallel=1, port=int(closed_url.rsplit(":", 1)[1]))
    try:
        run = ended(client, start_run(client, "nowhere"))
        assert run.status == "completed", run.last_error
    finally:
        late.stop()


def test_an_engine_that_answers_errors_fails_the_run_with_its_message(client, failing_engine):
    run = ended(client, start_run(client, "erring"))
    message = assert_failed_naming(run, "erring", failing_engine)
    assert ENGINE_FAULT in message and "500" in message


def test_an_engine_killed_mid_reply_fails_the_run_and_serves_again_once_restarted(client, engine):
    story = "Write a very long story about the history of the sea, with many chapters."
    run = start_run(client, "dying", story, temperature=1.0, max_completion_tokens=1000)
    deadline = time.monotonic() + DEADLINE
    while not client.beta.threads.messages.list(run.thread_id, run_id=run.id).data:
        assert time.monotonic() < deadline, "the reply never started"
        time.sleep(0.05)  # the reply is streaming from the engine
    engine.kill()
    run = ended(client, run)
    assert_failed_naming(run, "dying", engine.url)
    engine.start()  # the same port: the server reaches it again
    again = ended(client, start_run(client, "dying"))
    assert again.status == "completed", again.last_error
    reply = client.beta.threads.messages.list(again.thread_id, run_id=again.id).data[0]
    assert reply.content[0].text.value.strip()
