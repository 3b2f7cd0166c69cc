"""Auth: a key belongs to a project; another project's objects are invisible (404, absent from lists);
a missing or wrong key is 401; without keys the server refuses to bind beyond loopback."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import openai
import pytest

from tests.contract.helpers import MODEL, api_error, check_error_body, upload
from tests.support import KEY_A, free_port


@pytest.fixture(scope="module")
def owned(client):
    """Objects of project A."""
    file = upload(client, b"secret", name="secret.txt")
    assistant = client.beta.assistants.create(model=MODEL, name="private")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "private"}])
    message = client.beta.threads.messages.list(thread.id).data[0]
    return {"file": file, "assistant": assistant, "thread": thread, "message": message}


def test_other_project_cannot_read_or_list(client_b, owned):
    a, t, m, f = owned["assistant"], owned["thread"], owned["message"], owned["file"]
    reads = [
        (lambda: client_b.beta.assistants.retrieve(a.id), f"No assistant found with id '{a.id}'."),
        (lambda: client_b.beta.threads.retrieve(t.id), f"No thread found with id '{t.id}'."),
        (lambda: client_b.beta.threads.messages.list(t.id), f"No thread found with id '{t.id}'."),
        (
            lambda: client_b.beta.threads.messages.retrieve(m.id, thread_id=t.id),
            f"No thread found with id '{t.id}'.",
        ),
        (lambda: client_b.files.retrieve(f.id), f"No file found with id '{f.id}'."),
        (lambda: client_b.files.content(f.id), f"No file found with id '{f.id}'."),
    ]
    for call, message in reads:
        with api_error(openai.NotFoundError, 404, message=message):
            call()
    assert a.id not in [x.id for x in client_b.beta.assistants.list(limit=100)]
    assert f.id not in [x.id for x in client_b.files.list()]


def test_other_project_cannot_use_ids(client_b, owned):
    t, m, f = owned["thread"], owned["message"], owned["file"]
    with api_error(openai.NotFoundError, 404):
        client_b.beta.threads.messages.create(t.id, role="user", content="intrusion")
    with api_error(openai.BadRequestError, 400, param="tool_resources.code_interpreter.file_ids[0]"):
        client_b.beta.assistants.create(
            model=MODEL, tool_resources={"code_interpreter": {"file_ids": [f.id]}}
        )
    with api_error(openai.BadRequestError, 400, param="attachments[0].file_id"):
        own = client_b.beta.threads.create()
        client_b.beta.threads.messages.create(
            own.id,
            role="user",
            content="x",
            attachments=[{"file_id": f.id, "tools": [{"type": "file_search"}]}],
        )
    with api_error(openai.BadRequestError, 400, param="after"):
        client_b.beta.threads.messages.list(own.id, after="not-ours")
    assert m.id not in [x.id for x in client_b.beta.threads.messages.list(own.id)]


def test_other_project_cannot_update_or_delete(client, client_b, owned):
    a, t, m, f = owned["assistant"], owned["thread"], owned["message"], owned["file"]
    writes = [
        lambda: client_b.beta.assistants.update(a.id, name="stolen"),
        lambda: client_b.beta.assistants.delete(a.id),
        lambda: client_b.beta.threads.update(t.id, metadata={"x": "y"}),
        lambda: client_b.beta.threads.delete(t.id),
        lambda: client_b.beta.threads.messages.update(m.id, thread_id=t.id, metadata={"x": "y"}),
        lambda: client_b.beta.threads.messages.delete(m.id, thread_id=t.id),
        lambda: client_b.files.delete(f.id),
    ]
    for call in writes:
        with api_error(openai.NotFoundError, 404):
            call()
    assert client.beta.assistants.retrieve(a.id) == a
    assert client.beta.threads.retrieve(t.id) == t
    assert client.beta.threads.messages.retrieve(m.id, thread_id=t.id) == m
    assert client.files.retrieve(f.id) == f
    assert client.files.content(f.id).read() == b"secret"


def test_missing_or_wrong_key_is_401(server):
    wrong = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="sk-wrong-key-123456", max_retries=0)
    for call in (
        lambda: wrong.beta.assistants.list(),
        lambda: wrong.beta.assistants.create(model=MODEL),
        lambda: wrong.files.list(),
        lambda: wrong.models.list(),
        lambda: wrong.beta.threads.create(),
    ):
        with api_error(openai.AuthenticationError, 401, message="Incorrect API key provided"):
            call()
    with httpx.Client(base_url=f"{server.base_url}/v1") as http:
        check_error_body(http.get("assistants"), 401, message="You didn't provide an API key")
        check_error_body(http.get("assistants", headers={"Authorization": "Basic " + KEY_A}), 401)
        check_error_body(http.get("files", headers={"Authorization": "Bearer"}), 401)
        assert http.get("assistants", headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 200
        assert http.get(f"{server.base_url}/health").json() == {"status": "ok"}  # probes need no key


def test_no_keys_refuses_non_loopback(tmp_path):
    env = {**os.environ, "ASSISTD_API_KEYS": ""}
    cmd = [sys.executable, "-m", "assistd", "serve", "--host", "0.0.0.0", "--port", str(free_port())]
    cmd += ["--data-dir", str(tmp_path / "data")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode != 0
    assert "loopback" in result.stderr
    assert not (tmp_path / "data" / "assistd.db").exists()


def test_no_keys_on_loopback_serves_without_auth(tmp_path):
    from tests.support import ServerProcess

    proc = ServerProcess(tmp_path / "open", env={"ASSISTD_API_KEYS": ""}, args=["--kernel-pool-size", "0"])
    try:
        open_client = openai.OpenAI(base_url=f"{proc.base_url}/v1", api_key="anything", max_retries=0)
        assistant = open_client.beta.assistants.create(model=MODEL)
        assert httpx.get(f"{proc.base_url}/v1/assistants/{assistant.id}").status_code == 200  # no key at all
    finally:
        proc.stop()
    assert "authentication is off" in proc.log()
