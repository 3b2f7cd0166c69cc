"""The scripted engine (tests/scripted_engine.py) behind the real server: a models file registers it by
`url` with a ChatML `chat_template` and no GGUF, and runs through the openai SDK get the scripted text, as
a model family's end-to-end tests will. No weights are involved."""

from __future__ import annotations

import time

import openai
import pytest

from tests.remote_engine import models_file, remote_server
from tests.scripted_engine import ScriptedEngine
from tests.support import KEY_A

pytestmark = pytest.mark.contract

MODEL = "scripted-chatml"
# SmolLM2's template: ChatML.
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def engine():
    with ScriptedEngine(
        CHATML, control_tokens=["<|im_start|>"], eog_tokens=["<|im_end|>"], eos="<|im_end|>"
    ) as engine:
        yield engine


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    base = tmp_path_factory.mktemp("scripted-engine")
    models = models_file(base / "models.toml", MODEL, engine.url, model_path=None, chat_template=CHATML)
    server = remote_server(base / "server", models)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def assistant(client):
    return client.beta.assistants.create(model=MODEL, instructions="You are terse.")


def test_a_run_answers_with_the_scripted_text(engine, client, assistant):
    engine.script("Hello from the script.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Say hello."}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "completed", run.last_error
    message = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert message.role == "assistant" and message.content[0].text.value == "Hello from the script."
    request = engine.requests[-1]
    assert not request.continuation and request.body["stream"] is True
    assert request.prompt.startswith("<|im_start|>system\nYou are terse.")
    assert request.prompt.endswith("<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n")
    assert run.usage.completion_tokens == request.tokens_predicted > 0
    assert run.usage.prompt_tokens == len(engine.tokenize(request.prompt))


def test_a_streamed_run_gets_the_text_in_deltas(engine, client, assistant):
    text = "Streamed from the script, piece by piece."
    engine.script(text)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Stream something."}])
    # paced as a model generates: deltas that wait together are merged (api/sse.py), these come apart
    engine.piece_delay = 0.05
    try:
        with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
            deltas = list(stream.text_deltas)
    finally:
        engine.piece_delay = 0.0
    assert "".join(deltas) == text and len(deltas) > 1
    assert stream.get_final_run().status == "completed"
    stored = client.beta.threads.messages.list(thread.id).data[0]
    assert stored.content[0].text.value == text


def test_streamed_deltas_add_up_to_the_final_text_when_the_reply_ends_in_whitespace(
    engine, client, assistant
):
    """The whitespace a reply ends with is not part of its message: it is never streamed either (a full
    suite saw a response's deltas end in "\n " and its text in " "), for runs and responses alike."""
    text = "First line.\n\nSecond line."
    engine.script(text + " \n\n")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Two lines."}])
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        deltas = list(stream.text_deltas)
    assert "".join(deltas) == text
    assert client.beta.threads.messages.list(thread.id).data[0].content[0].text.value == text
    engine.script(text + "\n \n")
    with client.responses.stream(model=MODEL, input="Two lines.") as response_stream:
        events = list(response_stream)
    final = response_stream.get_final_response()
    assert final.output_text == text
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == text
    done = [e.text for e in events if e.type == "response.output_text.done"]
    assert done == [text]


def test_a_stream_interval_relays_what_came_meanwhile_as_one_delta(engine, assistant, tmp_path):
    """`--stream-interval-ms`: the engine's stream is read at most every interval after its first token,
    and the tokens read together are one delta; the text whole, the stored message the same."""
    models = models_file(tmp_path / "models.toml", MODEL, engine.url, model_path=None, chat_template=CHATML)
    paced = remote_server(tmp_path / "server", models, env={"ASSISTD_STREAM_INTERVAL_MS": "300"})
    try:
        client = openai.OpenAI(base_url=f"{paced.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=60)
        mine = client.beta.assistants.create(model=MODEL, instructions="You are terse.")
        text = "Streamed from the script, piece by piece, and gathered as it came."
        tokens = len(engine.tokenize(text))
        engine.script(text)
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Stream something."}])
        engine.piece_delay = 0.02  # a token every 20 ms: about 15 of them in an interval
        try:
            with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=mine.id) as stream:
                began = time.monotonic()
                deltas = list(stream.text_deltas)
                took = time.monotonic() - began
        finally:
            engine.piece_delay = 0.0
        assert "".join(deltas) == text
        # gathered: a delta per 300 ms read (the first token at once, the held-back end), not one per token;
        # a slow machine takes longer and reads more often, never more than its time allows
        assert len(deltas) <= 3 + took / 0.3 and len(deltas) < tokens, (tokens, took, deltas)
        assert stream.get_final_run().status == "completed"
        assert client.beta.threads.messages.list(thread.id).data[0].content[0].text.value == text
    finally:
        paced.stop()
