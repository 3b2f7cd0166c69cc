"""`assistd chat` against the real server: the reply streams to the terminal and lands on the thread."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import DEFAULT_MODEL, KEY_A

pytestmark = [pytest.mark.contract, pytest.mark.model]


def chat(server, *args: str, stdin: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "assistd", "chat", *args, "--base-url", f"{server.base_url}/v1"]
    return subprocess.run(
        [*cmd, "--api-key", KEY_A], input=stdin, capture_output=True, text=True, timeout=300
    )


def test_chat_streams_replies_and_keeps_the_thread(server, client):
    assistant = client.beta.assistants.create(
        model=DEFAULT_MODEL, name="Terminal pal", instructions="You answer in one short sentence."
    )
    done = chat(server, assistant.id, "--max-tokens", "40", stdin="Say hello.\nAnd goodbye.\n\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"Chatting with Terminal pal ({DEFAULT_MODEL}) on thread thread_" in out
    assert out.count("assistant > ") == 2, out
    thread_id = re.search(r"Thread (thread_\S+) kept", out).group(1)
    messages = client.beta.threads.messages.list(thread_id=thread_id, order="asc").data
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    for reply in (messages[1], messages[3]):  # streamed to the terminal as stored
        assert reply.content[0].text.value.strip()
        assert f"assistant > {reply.content[0].text.value}" in out, out
    # --thread continues the same conversation.
    again = chat(server, assistant.id, "--thread", thread_id, "--max-tokens", "20", stdin="Thanks.\n")
    assert again.returncode == 0, again.stderr
    assert len(client.beta.threads.messages.list(thread_id=thread_id).data) == 6


def test_chat_with_an_unknown_assistant_says_so(server):
    done = chat(server, "asst_missing", stdin="")
    assert done.returncode == 1
    assert "No assistant found with id 'asst_missing'" in done.stderr


def upload(server, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "assistd", "upload", *args, "--base-url", f"{server.base_url}/v1"]
    return subprocess.run([*cmd, "--api-key", KEY_A], capture_output=True, text=True, timeout=300)


def test_upload_into_a_new_vector_store_shows_progress(server, client, tmp_path):
    first, second = tmp_path / "vacation.txt", tmp_path / "travel.txt"
    first.write_text("Every employee has 25 days of paid vacation per year.\n" * 40)
    second.write_text("Train travel is second class; hotels up to 150 euros a night.\n")
    done = upload(server, str(first), str(second), "--new-store", "cli handbook")
    assert done.returncode == 0, done.stdout + done.stderr
    ids = re.findall(r"^uploaded \[\d/2\] \S+ -> (file-\S+) \(", done.stdout, re.M)
    assert len(ids) == 2, done.stdout
    store_id = re.search(r"^created vector store (vs_\S+) \(cli handbook\)$", done.stdout, re.M).group(1)
    assert f"indexed into {store_id}: 2 completed, 0 failed, 0 cancelled" in done.stdout
    assert sorted(f.id for f in client.vector_stores.files.list(vector_store_id=store_id)) == sorted(ids)
    assert client.files.retrieve(ids[0]).filename == "vacation.txt"


def test_upload_of_a_missing_file_says_so(server, tmp_path):
    done = upload(server, str(tmp_path / "nope.pdf"))
    assert done.returncode == 1 and "no such file" in done.stderr
