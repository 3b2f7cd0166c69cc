"""OpenAICompletionsBackend against a real engine: llama.cpp's server (`assistd engine`, a separate process on
a free port) answers the OpenAI-compatible `/v1/completions` with a grammar and usage, as vLLM and SGLang do
with their own grammar keys (which cannot run here: the request they get is checked as a body)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assistd.config import ModelEntry
from assistd.llm.backend import GenerationParams
from assistd.llm.errors import ModelLoadError
from assistd.llm.openai_completions import OpenAICompletionsBackend
from assistd.llm.vocab import prompt_tokens
from tests.remote_engine import MODEL_FILE, EngineProcess
from tests.support import free_port

pytestmark = pytest.mark.model

ENGINE_CTX = 2048
ENDLESS = 'root ::= "ab " root'  # never complete: the engine may not end the reply by itself


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    proc = EngineProcess(tmp_path_factory.mktemp("openai-engine"), parallel=2, n_ctx=ENGINE_CTX)
    yield proc
    proc.stop()


def open_backend(engine: EngineProcess, **fields) -> OpenAICompletionsBackend:
    entry = ModelEntry(name="smol-openai", engine="openai", url=engine.url, **{"path": MODEL_FILE, **fields})
    return OpenAICompletionsBackend(entry)


@pytest.fixture(scope="module")
def backend(engine):
    backend = open_backend(engine)
    yield backend
    backend.close()


def ask(backend: OpenAICompletionsBackend, question: str) -> str:
    return backend.render([{"role": "user", "content": question}])


def generate(backend, prompt, cancelled=lambda: False, **params):
    pieces: list[str] = []
    result = backend.generate(prompt, GenerationParams(**params), pieces.append, cancelled)
    return result, pieces


def test_text_streams_piecewise_with_the_engines_usage(backend):
    prompt = ask(backend, "Name three colors.")
    result, pieces = generate(backend, prompt, max_tokens=24, temperature=0.0)
    assert len(pieces) > 1 and "".join(pieces) == result.text and result.text.strip()
    assert result.prompt_tokens == len(prompt_tokens(backend._vocab, prompt))  # the engine counted our tokens
    assert 1 <= result.completion_tokens <= 24
    assert result.finish_reason in ("stop", "length")
    again, _ = generate(backend, prompt, max_tokens=24, temperature=0.0)
    assert again.text == result.text  # temperature 0: the same reply
    assert again.cached_tokens > 0  # the engine's own count: the prompt's KV state was reused


def test_max_tokens_ends_the_reply_with_length(backend):
    result, pieces = generate(backend, ask(backend, "Hello"), max_tokens=3, grammar=ENDLESS)
    assert result.finish_reason == "length" and result.completion_tokens == 3
    assert result.text == "".join(pieces) and result.text.startswith("ab")


def test_a_stop_string_ends_the_reply_before_it(backend):
    grammar = 'root ::= "one two three four"'
    result, _ = generate(backend, ask(backend, "Count."), max_tokens=20, stop=["three"], grammar=grammar)
    assert result.finish_reason == "stop" and result.text == "one two "


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_grammar_admits_only_its_words(backend, seed):
    prompt = ask(backend, "Write a poem about the sea.")
    grammar = 'root ::= "yes" | "no"'
    result, _ = generate(backend, prompt, max_tokens=16, temperature=1.0, seed=seed, grammar=grammar)
    assert result.text in ("yes", "no") and result.finish_reason == "stop"


def test_cancel_mid_stream_ends_cancelled_and_frees_the_slot(engine, backend):
    pieces: list[str] = []
    started = threading.Event()

    def on_text(text: str) -> None:
        pieces.append(text)
        started.set()

    def cancelled() -> bool:
        return len(pieces) >= 4

    params = GenerationParams(max_tokens=1500, grammar=ENDLESS)
    result = backend.generate(ask(backend, "Go on."), params, on_text, cancelled)
    assert started.is_set() and result.finish_reason == "cancelled"
    assert result.text == "".join(pieces) and len(pieces) < 1500
    deadline = time.monotonic() + 60
    while engine.busy() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert engine.busy() == 0, engine.slots()


def test_without_a_path_the_tokenizer_and_template_come_from_the_engine(engine, backend):
    remote = open_backend(engine, path=None)
    try:
        assert remote.chat_template == backend.chat_template
        prompt = ask(remote, "Say yes or no.")
        assert prompt == ask(backend, "Say yes or no.")
        assert remote.tokenize(prompt) == backend.tokenize(prompt)
        result, _ = generate(remote, prompt, max_tokens=4, grammar='root ::= "yes" | "no"')
        assert result.text in ("yes", "no")
    finally:
        remote.close()


def test_back_to_back_generations_never_meet_a_closed_connection(engine):
    """llama.cpp's server closes a connection after a streamed reply although it announces keep-alive: a
    request sent on it failed ('Server disconnected') about once in seven before streams got their own."""
    remote = open_backend(engine, path=None)  # a /tokenize request between the streams, on the same pool
    try:
        for _ in range(60):
            result, _ = generate(remote, ask(remote, "Hi"), max_tokens=2, grammar=ENDLESS)
            assert result.finish_reason == "length"
    finally:
        remote.close()


def test_the_context_is_the_engines_where_it_is_smaller(backend):
    assert backend.n_ctx == ENGINE_CTX  # the entry says 8192; the engine's slots have 2048
    tokens = backend.tokenize("hello " * 10)
    body = backend.request(tokens, GenerationParams(max_tokens=10_000))
    assert body["max_tokens"] == ENGINE_CTX - len(tokens)


def test_each_engines_keys_for_the_grammar_and_the_penalty(engine):
    grammar = 'root ::= "x"'
    params = GenerationParams(max_tokens=8, grammar=grammar, repeat_penalty=1.3, seed=7, stop=["\n"])
    cases = {
        ("grammar", "repeat_penalty"): {"grammar": grammar},  # llama.cpp
        ("structured_outputs.grammar", "repetition_penalty"): {"structured_outputs": {"grammar": grammar}},
        ("guided_grammar", "repetition_penalty"): {"guided_grammar": grammar},  # vLLM before 0.12
        ("ebnf", "repetition_penalty"): {"ebnf": grammar},  # SGLang
    }
    for (grammar_param, penalty_param), grammar_fields in cases.items():
        remote = open_backend(engine, grammar_param=grammar_param, penalty_param=penalty_param, parallel=3)
        try:
            body = remote.request([1, 2, 3], params)
        finally:
            remote.close()
        assert remote.slots == 3
        assert body == {
            "model": "smol-openai",
            "prompt": [1, 2, 3],
            "max_tokens": 8,
            "temperature": 1.0,
            "top_p": 1.0,
            penalty_param: 1.3,
            "stream": True,
            "stream_options": {"include_usage": True},
            "stop": ["\n"],
            "seed": 7,
            **grammar_fields,
        }


def test_an_unreachable_engine_is_a_load_error_naming_it():
    url = f"http://127.0.0.1:{free_port()}"
    entry = ModelEntry(name="nowhere", engine="openai", url=url, path=MODEL_FILE)
    with pytest.raises(ModelLoadError, match=f"model 'nowhere' on the OpenAI-compatible engine at {url}"):
        OpenAICompletionsBackend(entry)


@contextmanager
def listing_engine(models: list[dict]) -> Iterator[str]:
    """An HTTP server that answers only `GET /v1/models` with `models` (for the load errors, which happen
    before anything else is asked of an engine)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"object": "list", "data": models}).encode()
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_model_the_engine_does_not_serve_is_a_load_error_naming_what_it_serves():
    served = [
        {"id": "Qwen/Qwen2.5-7B-Instruct", "object": "model", "owned_by": "vllm", "max_model_len": 4096}
    ]
    with listing_engine(served) as url:
        entry = ModelEntry(name="qwen", engine="openai", url=url, path=MODEL_FILE)
        with pytest.raises(
            ModelLoadError, match=r"does not serve 'qwen' \(it serves: Qwen/Qwen2.5-7B-Instruct\)"
        ):
            OpenAICompletionsBackend(entry)
        backend = OpenAICompletionsBackend(
            entry.model_copy(update={"remote_model": "Qwen/Qwen2.5-7B-Instruct"})
        )
        assert (
            backend.n_ctx == 4096 and backend.model == "Qwen/Qwen2.5-7B-Instruct"
        )  # max_model_len bounds it
        backend.close()


def test_without_a_path_an_engine_that_keeps_its_template_needs_one_in_the_models_file():
    with listing_engine([{"id": "qwen", "object": "model", "owned_by": "vllm"}]) as url:
        entry = ModelEntry(name="qwen", engine="openai", url=url)
        with pytest.raises(ModelLoadError, match="give its GGUF `path` or set `chat_template`"):
            OpenAICompletionsBackend(entry)
