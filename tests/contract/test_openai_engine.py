"""A model served by an OpenAI-compatible completions engine (`engine = "openai"` in the models file): the
suite's engine is llama.cpp's server (`assistd engine`, a separate process), reached only through its
`/v1/completions`; a streamed run through the official SDK completes with the engine's usage."""

from __future__ import annotations

import json

import openai
import pytest

from tests.remote_engine import EngineProcess, models_file, remote_server
from tests.support import KEY_A

pytestmark = [pytest.mark.contract, pytest.mark.model]

NAME = "smol-openai"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    base = tmp_path_factory.mktemp("openai-engine")
    engine = EngineProcess(base, parallel=2)
    models = models_file(base / "models.toml", NAME, engine.url, engine="openai", grammar_param="grammar")
    try:
        server = remote_server(base / "server", models)
    except Exception:
        engine.stop()
        raise
    yield openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)
    server.stop()
    engine.stop()


def test_streamed_run_completes_on_the_openai_engine(client):
    assistant = client.beta.assistants.create(model=NAME, instructions="Answer briefly.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Name a color."}])
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        pieces = list(stream.text_deltas)
    run = stream.get_final_run()
    assert run.status == "completed", run.last_error
    assert run.model == NAME and run.usage.prompt_tokens > 0 and run.usage.completion_tokens > 0
    stored = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert len(pieces) > 1 and "".join(pieces).strip() == stored.content[0].text.value.strip() != ""


def test_json_schema_reply_is_constrained_by_the_engines_grammar(client):
    schema = {
        "type": "object",
        "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}},
        "required": ["color"],
        "additionalProperties": False,
    }
    assistant = client.beta.assistants.create(
        model=NAME,
        response_format={"type": "json_schema", "json_schema": {"name": "pick", "schema": schema}},
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Write a long story."}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    reply = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0].content[0].text.value
    assert json.loads(reply)["color"] in ("red", "green", "blue")
