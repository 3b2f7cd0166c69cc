"""`assistd chat` against the real server: the reply streams to the terminal and lands on the thread."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support import DEFAULT_MODEL, KEY_A, MODELS_DIR

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


def test_models_list_names_the_engine_of_each_model(tmp_path):
    models = tmp_path / "models.toml"
    models.write_text(
        "\n".join(
            [
                "[[models]]",
                'name = "gpu-box"',
                'url = "http://10.0.0.7:8080"',
                "[[models]]",
                'name = "vllm"',
                'engine = "openai"',
                'url = "http://10.0.0.8:8000"',
                f'path = "{tmp_path / "absent.gguf"}"',
                "[[models]]",
                'name = "old-path"',
                'engine = "llama-cpp-python"',
                f'path = "{MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"}"',
            ]
        )
        + "\n"
    )
    env = {**os.environ, "ASSISTD_MODELS_FILE": str(models), "ASSISTD_MODELS_DIR": str(MODELS_DIR)}
    done = subprocess.run(
        [sys.executable, "-m", "assistd", "models", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = {line[2:].split()[0]: line for line in done.stdout.splitlines()}
    assert (
        lines[DEFAULT_MODEL].startswith("*")
        and "[embedded llama.cpp server engine (xllamacpp)]" in lines[DEFAULT_MODEL]
    )
    assert "http://10.0.0.7:8080  [llama.cpp server at http://10.0.0.7:8080]" in lines["gpu-box"]
    assert "MISSING" in lines["vllm"]  # its tokenizer file is not there
    assert "[OpenAI-compatible completions engine at http://10.0.0.8:8000]" in lines["vllm"]
    assert " ok " in lines["old-path"] and "[llama-cpp-python (in-process" in lines["old-path"]


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["db", "current"]])
def test_a_database_that_cannot_be_reached_is_one_line_without_its_password(tmp_path, command):
    url = "postgresql+psycopg://nobody:s3cret@127.0.0.1:9/none"  # port 9: nothing listens
    env = {**os.environ, "ASSISTD_DATA_DIR": str(tmp_path), "ASSISTD_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "assistd", *command], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        "assistd: the database at postgresql+psycopg://nobody:***@127.0.0.1:9/none "
    )
    assert "cannot be used: connection failed" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr + done.stdout
