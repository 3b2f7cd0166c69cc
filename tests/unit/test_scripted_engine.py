"""The scripted engine (tests/scripted_engine.py) answers as llama.cpp's server does: its tokenizer is
invertible, its replies come token by token with special tokens hidden unless preserved, eog tokens, stop
strings and n_predict end them, a request that repeats the last prompt with a prefix of the reply gets the
rest of it, and assistd's own llama.cpp backend reads it as it reads the real engine."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from assistd.config import ModelEntry
from assistd.llm.backend import GenerationParams
from assistd.llm.engines import open_backend
from tests.scripted_engine import DEFAULT_REPLY, ScriptedEngine

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
HARMONY = ["<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|constrain|>"]
PROMPT = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture
def engine():
    with ScriptedEngine(
        CHATML,
        control_tokens=["<|im_start|>", *HARMONY],
        eog_tokens=["<|im_end|>", "<|return|>", "<|call|>"],
        bos="<s>",
        eos="<|im_end|>",
        n_ctx=256,
        slots=2,
        user_tokens=["<think>", "</think>"],
    ) as engine:
        yield engine


@pytest.fixture
def http(engine):
    with httpx.Client(base_url=engine.url, timeout=10) as client:
        yield client


def tokenize(http, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
    body = {"content": text, "add_special": add_special, "parse_special": parse_special}
    return http.post("/tokenize", json=body).json()["tokens"]


def detokenize(http, tokens: list[int]) -> str:
    return http.post("/detokenize", json={"tokens": tokens}).json()["content"]


def stream(http, **body) -> tuple[list[dict], dict]:
    """The events of a streamed /completion: (partials, final)."""
    events = []
    # A connection of its own, as assistd uses: llama.cpp closes it after a stream (announcing keep-alive).
    body = {"prompt": PROMPT, "stream": True, **body}
    with http.stream("POST", "/completion", json=body, headers={"Connection": "close"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events and events[-1]["stop"] and not any(e["stop"] for e in events[:-1])
    return events[:-1], events[-1]


def text_of(partials: list[dict]) -> str:
    return "".join(e["content"] for e in partials)


def test_health_props_slots_and_models_as_llama_cpp(engine, http):
    assert http.get("/health").json() == {"status": "ok"}
    props = http.get("/props").json()
    assert props["chat_template"] == CHATML
    assert (props["bos_token"], props["eos_token"]) == ("<s>", "<|im_end|>")
    assert props["total_slots"] == 2 and props["default_generation_settings"]["n_ctx"] == 256
    assert props["model_path"] == "scripted" and props["modalities"]["vision"] is False
    assert [(s["id"], s["is_processing"]) for s in http.get("/slots").json()] == [(0, False), (1, False)]
    listed = http.get("/v1/models").json()
    assert listed["object"] == "list" and listed["data"][0]["owned_by"] == "llamacpp"
    assert http.get("/nothing").status_code == 404


def test_the_tokenizer_is_invertible_with_one_id_per_special_token(http):
    text = "<s><|im_start|>user\nnaïve 🙂 text<|im_end|>\n<|channel|>analysis<|message|><think>x</think>"
    tokens = tokenize(http, text)
    assert detokenize(http, tokens) == text
    assert tokens[:2] == [9, 0]  # ids in order: <|im_start|> 0, harmony 1-5, eog 6-8, <s> 9
    assert all(t < 0x10000 for t in tokenize(http, "<|im_start|><|channel|><|return|><think>"))
    assert len(tokenize(http, "<|im_start|><|im_start|>")) == 2
    assert len(tokenize(http, "abcdefg")) == 3  # pieces of up to 3 characters
    assert len(tokenize(http, "ab\ncd")) == 2  # a newline ends a piece
    # Without parse_special a control token's text is ordinary text; a user token stays one token.
    plain = tokenize(http, "<|im_start|><think>", parse_special=False)
    assert len(plain) == 5 and detokenize(http, plain) == "<|im_start|><think>"
    bos = tokenize(http, "", add_special=True)
    assert len(bos) == 1 and detokenize(http, bos) == "<s>"
    assert tokenize(http, "hi", add_special=True)[0] == bos[0]
    assert http.post("/detokenize", json={"tokens": [10**9]}).status_code == 400


def test_without_a_bos_add_special_adds_nothing():
    with ScriptedEngine(CHATML, eog_tokens=["<|im_end|>"]) as engine:
        response = httpx.post(f"{engine.url}/tokenize", json={"content": "", "add_special": True})
        assert response.json() == {"tokens": []}


def test_a_reply_streams_in_pieces_and_ends_with_the_final_event(engine, http):
    engine.script("Hello from the script.")
    partials, final = stream(http)
    assert text_of(partials) == "Hello from the script."
    assert [e["content"] for e in partials][:3] == ["Hel", "lo ", "fro"]
    prompt_tokens = len(engine.tokenize(PROMPT, add_special=True))
    assert final["stop_type"] == "eos" and final["content"] == "" and final["truncated"] is False
    assert final["tokens_evaluated"] == prompt_tokens and final["tokens_predicted"] == len(partials)
    assert final["timings"]["cache_n"] == 0
    record = engine.requests[-1]
    assert (record.prompt, record.served, record.content) == (
        "<s>" + PROMPT,
        "Hello from the script.",
        text_of(partials),
    )
    assert not record.continuation and record.stop_type == "eos" and record.body["stream"] is True


def test_not_streamed_one_json_with_the_whole_content(engine, http):
    engine.script("Hello there.")
    body = http.post("/completion", json={"prompt": engine.tokenize(PROMPT), "n_predict": 50}).json()
    assert body["content"] == "Hello there." and body["stop"] is True and body["stop_type"] == "eos"
    assert body["tokens_evaluated"] == len(engine.tokenize(PROMPT)) and body["tokens_predicted"] == 4


def test_control_tokens_print_only_when_preserved(engine, http):
    reply = "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Hi!"
    engine.script(reply, reply)
    partials, _ = stream(http)
    assert text_of(partials) == "analysisThink.assistantfinalHi!"
    partials, _ = stream(http, preserved_tokens=["<|channel|>", "<|message|>", "<|end|>", "<|start|>"])
    assert text_of(partials) == reply
    assert engine.requests[-1].preserved_tokens == ["<|channel|>", "<|message|>", "<|end|>", "<|start|>"]


def test_user_tokens_always_print_as_one_piece(engine, http):
    engine.script("<think>\nhmm</think>\n\nDone.")
    partials, _ = stream(http)
    assert text_of(partials) == "<think>\nhmm</think>\n\nDone."
    assert "<think>" in [e["content"] for e in partials]


def test_an_eog_token_ends_the_reply_unprinted(engine, http):
    engine.script("Calling.<|call|>never sent")
    partials, final = stream(http)
    assert text_of(partials) == "Calling." and final["stop_type"] == "eos"
    assert final["tokens_predicted"] == len(partials) == 4  # "Cal", "lin", "g.", <|call|>
    with ScriptedEngine(CHATML, eog_tokens=["<|im_end|>"], special=True) as loud:  # llama.cpp's --special
        loud.script("Hi<|im_end|>more")
        body = httpx.post(f"{loud.url}/completion", json={"prompt": PROMPT}).json()
        assert body["content"] == "Hi<|im_end|>" and body["stop_type"] == "eos"


def test_a_stop_string_ends_the_reply_before_it_and_is_held_back_while_partial(engine, http):
    engine.script("one two three four", "a <tool and <tool_call>{}")
    partials, final = stream(http, stop=["three"])
    assert text_of(partials) == "one two " and final["stop_type"] == "word"
    assert final["stopping_word"] == "three"
    partials, final = stream(http, stop=["<tool_call>"])
    assert text_of(partials) == "a <tool and " and final["stop_type"] == "word"
    assert "" in [e["content"] for e in partials]  # "<to" was held back until "ol " showed it is no stop
    assert engine.requests[-1].content == "a <tool and "


def test_n_predict_ends_the_reply_with_limit(engine, http):
    engine.script("abcdefghijklmnop")
    partials, final = stream(http, n_predict=2)
    assert text_of(partials) == "abcdef" and final["stop_type"] == "limit" and final["tokens_predicted"] == 2


def test_the_context_bounds_prompt_and_reply(engine, http):
    engine.script("x" * 3000)
    _, final = stream(http)
    assert final["stop_type"] == "limit" and final["truncated"] is True
    assert final["tokens_evaluated"] + final["tokens_predicted"] == 256
    response = http.post("/completion", json={"prompt": "y" * 3 * 256})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "exceed_context_size_error"


def test_scripted_replies_in_order_then_the_default(engine, http):
    engine.script("first", "second")
    assert engine.pending == 2
    served = [text_of(stream(http)[0]) for _ in range(3)]
    assert served == ["first", "second", DEFAULT_REPLY] and engine.pending == 0
    assert [r.continuation for r in engine.requests] == [False, False, False]


def test_the_prompt_plus_a_prefix_of_the_reply_gets_the_rest(engine, http):
    reply = 'Let me look.<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    engine.script(reply, "next")
    first, _ = stream(http, stop=["</tool_call>"])
    assert text_of(first) == 'Let me look.<tool_call>\n{"name": "f", "arguments": {}}\n'
    head = "Let me look.<tool_call>"
    partials, _ = stream(http, prompt=PROMPT + head, grammar="root ::= [^<]+")
    assert text_of(partials) == reply[len(head) :]
    record = engine.requests[-1]
    assert record.continuation and record.grammar == "root ::= [^<]+" and record.served == reply[len(head) :]
    # Chained: a longer prefix of the same reply; then a prompt that is not the reply's goes on to the next.
    assert text_of(stream(http, prompt=PROMPT + head + "\n")[0]) == reply[len(head) + 1 :]
    assert text_of(stream(http, prompt=PROMPT + "Let me")[0]) == reply[len("Let me") :]
    assert text_of(stream(http, prompt=PROMPT + "Let you")[0]) == "next"
    assert [r.continuation for r in engine.requests] == [False, True, True, True, False]


def test_a_later_turn_ending_like_the_reply_starts_is_no_continuation(engine, http):
    engine.script("<think>\nreasoning</think>answer", "second answer")
    stream(http)
    later = (
        PROMPT + "<think>\nreasoning</think>answer<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n<think>\n"
    )
    assert text_of(stream(http, prompt=later)[0]) == "second answer"


def test_the_slot_cache_counts_the_shared_prompt(engine, http):
    engine.script("Hello there.", "Bye.")
    stream(http)
    follow = PROMPT + "Hello there.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    _, final = stream(http, prompt=follow)
    assert final["timings"]["cache_n"] == len(engine.tokenize(PROMPT + "Hello there.", add_special=True))
    _, final = stream(http, prompt=follow, cache_prompt=False)
    assert final["timings"]["cache_n"] == 0


def test_a_client_that_leaves_mid_reply_frees_the_slot(engine, http):
    engine.piece_delay = 0.002
    engine.script("word " * 2000)
    with http.stream("POST", "/completion", json={"prompt": PROMPT, "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                break
    record = engine.requests[-1]
    assert record.done.wait(10) and record.disconnected and record.stop_type == ""
    assert engine.busy() == 0 and http.get("/health").status_code == 200
    engine.piece_delay = 0.0
    engine.script("after")
    assert text_of(stream(http)[0]) == "after"


def test_requests_beyond_the_slots_wait_for_one(engine, http):
    engine.piece_delay = 0.01
    engine.script("a" * 60, "b" * 60, "c" * 60)
    busy: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            busy.append(sum(s["is_processing"] for s in httpx.get(f"{engine.url}/slots").json()))
            time.sleep(0.01)

    threads = [threading.Thread(target=stream, args=(http,)) for _ in range(3)]
    watcher = threading.Thread(target=watch)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    assert max(busy) == 2 and engine.busy() == 0
    assert sorted(r.content for r in engine.requests) == ["a" * 60, "b" * 60, "c" * 60]


def test_openai_completions_form(engine, http):
    engine.script("Hello there.")
    body = http.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2}).json()
    assert body["choices"][0]["text"] == "Hello " and body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


def test_assistds_llama_server_backend_reads_it(engine):
    engine.script("Hello from the script.", 'Sure.<tool_call>{"a": 1}</tool_call>')
    entry = ModelEntry(name="scripted", url=engine.url, chat_template=CHATML)
    backend = open_backend(entry, slots=1, cache_bytes=0)
    try:
        assert (backend.n_ctx, backend.slots) == (256, 2)
        prompt = backend.render([{"role": "user", "content": "Hi"}])
        assert prompt == PROMPT
        pieces: list[str] = []
        result = backend.generate(prompt, GenerationParams(max_tokens=100), pieces.append, lambda: False)
        assert result.text == "".join(pieces) == "Hello from the script."
        # one piece per token read together (a batch), never more pieces than tokens
        assert result.finish_reason == "stop" and 1 <= len(pieces) <= result.completion_tokens
        assert result.completion_tokens == len(engine.tokenize("Hello from the script."))
        assert result.prompt_tokens == len(engine.tokenize(PROMPT, add_special=True))
        result = backend.generate(
            prompt, GenerationParams(max_tokens=100, stop=["</tool_call>"]), pieces.append, lambda: False
        )
        assert result.text == 'Sure.<tool_call>{"a": 1}' and result.finish_reason == "stop"
        assert result.cached_tokens == len(engine.tokenize(PROMPT, add_special=True)) - 1
        assert backend.busy_slots() == 0
    finally:
        backend.close()
