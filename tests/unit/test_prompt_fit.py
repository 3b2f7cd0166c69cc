"""Prompt fitting (engine/context.py `fit`) only ever renders message lists a strict chat template accepts:
the kept history starts with a user message, and no list without a user message is rendered (Llama 3.x with
tools: "Cannot put tools in the first user message when there's no first user message!"; Mistral: "roles must
alternate user/assistant"). Truncation still drops the oldest messages, keeps the end of a lone message that
is too long, and raises PromptTooLong when the instructions alone do not fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest

from assistd.engine.context import Conversation, PromptTooLong, TemplateRefused, fit
from assistd.llm.fake import ScriptedBackend
from assistd.storage.runs import RunRow

LLAMA_33 = Path(__file__).resolve().parents[1] / "fixtures" / "templates" / "llama-3.3.jinja"


class StrictTemplate:
    """Renders as the fake model does, but refuses what a strict template refuses, and keeps every list it
    was given."""

    def __init__(self, backend: ScriptedBackend) -> None:
        self.backend = backend
        self.calls: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        self.calls.append(messages)
        turns = [m for m in messages if m["role"] != "system"]
        if not any(m["role"] == "user" for m in turns):
            raise jinja2.TemplateError(
                "Cannot put tools in the first user message when there's no first user message!"
            )
        if turns[0]["role"] != "user":
            raise jinja2.TemplateError("Conversation roles must alternate user/assistant/user/assistant/...")
        return self.backend.render(messages)


def _run(**fields: Any) -> RunRow:
    return RunRow(id="r", project="p", thread_id="t", assistant_id="a", created_at=0, model="fake", **fields)


def _pad(n: int) -> str:
    return " ".join(["pad"] * n)


def _alternating(count: int, words: int = 30) -> list[dict[str, Any]]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message{i} {_pad(words)}"}
        for i in range(count)
    ]


def test_truncation_keeps_history_from_a_user_message_and_renders_no_refused_list():
    backend = ScriptedBackend(n_ctx=200)
    strict = StrictTemplate(backend)
    conversation = Conversation(system="sys", history=_alternating(20))
    prompt = fit(backend, conversation, _run(), reserve=50, render=strict)
    assert prompt.tokens <= 150 and prompt.dropped > 0
    assert "message19 " in prompt.text and "message0 " not in prompt.text
    kept = strict.calls[-1][1:]
    assert kept[0]["role"] == "user" and prompt.dropped == 20 - len(kept)
    assert len(strict.calls) <= 3  # the whole conversation, then the estimate confirmed (once or twice)


def test_dropping_skips_assistant_messages_to_the_next_user_message():
    backend = ScriptedBackend(n_ctx=200)
    strict = StrictTemplate(backend)
    history = [
        {"role": "user", "content": "first " + _pad(200)},
        {"role": "assistant", "content": "a1 short"},
        {"role": "assistant", "content": "a2 short"},
        {"role": "user", "content": "last question"},
        {"role": "assistant", "content": "a4 short"},
    ]
    prompt = fit(backend, Conversation(system="sys", history=history), _run(), reserve=50, render=strict)
    assert "last question" in prompt.text and "a4 short" in prompt.text
    assert "a1 short" not in prompt.text and "a2 short" not in prompt.text and prompt.dropped == 3


def test_tool_turns_and_tools_never_render_without_the_history():
    backend = ScriptedBackend(n_ctx=300)
    strict = StrictTemplate(backend)
    tool_turns = [
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c", "content": "result " + _pad(20)},
    ]
    conversation = Conversation(system="sys", history=_alternating(15), tool_turns=tool_turns)
    prompt = fit(backend, conversation, _run(), reserve=50, render=strict)
    assert "message14 " in prompt.text and "result" in prompt.text and prompt.dropped > 0
    assert all(call[1]["role"] == "user" for call in strict.calls)


def test_last_messages_leaves_out_assistant_messages_before_the_window_s_first_user_message():
    backend = ScriptedBackend(n_ctx=4096)
    strict = StrictTemplate(backend)
    conversation = Conversation(system="sys", history=_alternating(4, words=1))  # u a u a
    run = _run(truncation_strategy={"type": "last_messages", "last_messages": 3})
    prompt = fit(backend, conversation, run, reserve=50, render=strict)
    assert [m["content"].split()[0] for m in strict.calls[-1][1:]] == ["message2", "message3"]
    assert prompt.dropped == 2 and len(strict.calls) == 1
    # a window without any user message is the conversation the client asked for: kept as it is
    run = _run(truncation_strategy={"type": "last_messages", "last_messages": 1})
    prompt = fit(backend, conversation, run, reserve=50, render=backend.render)
    assert "message3" in prompt.text and "message2" not in prompt.text and prompt.dropped == 3


def test_a_lone_message_too_long_keeps_its_end():
    backend = ScriptedBackend(n_ctx=200)
    strict = StrictTemplate(backend)
    history = [
        {"role": "user", "content": "old " + _pad(20)},
        {"role": "assistant", "content": "reply " + _pad(20)},
        {"role": "user", "content": "START " + _pad(400) + " the question END"},
    ]
    prompt = fit(backend, Conversation(system="sys", history=history), _run(), reserve=50, render=strict)
    assert prompt.tokens <= 150 and "the question END" in prompt.text and "START" not in prompt.text
    assert "old" not in prompt.text and prompt.dropped == 2


def test_the_last_part_too_long_cuts_its_longest_message_and_keeps_the_user_message():
    backend = ScriptedBackend(n_ctx=200)
    strict = StrictTemplate(backend)
    history = [
        {"role": "user", "content": "the question"},
        {"role": "assistant", "content": "BEGIN " + _pad(400) + " the end"},
    ]
    prompt = fit(backend, Conversation(system="sys", history=history), _run(), reserve=50, render=strict)
    assert prompt.tokens <= 150 and "the question" in prompt.text and "the end" in prompt.text
    assert "BEGIN" not in prompt.text


def test_a_history_without_user_messages_drops_the_oldest_as_before():
    backend = ScriptedBackend(n_ctx=200)
    history = [{"role": "assistant", "content": f"note{i} {_pad(30)}"} for i in range(10)]
    prompt = fit(
        backend, Conversation(system="sys", history=history), _run(), reserve=50, render=backend.render
    )
    assert prompt.tokens <= 150 and "note9 " in prompt.text and "note0 " not in prompt.text


def test_instructions_alone_too_long_raise_prompt_too_long():
    backend = ScriptedBackend(n_ctx=200)
    strict = StrictTemplate(backend)
    conversation = Conversation(system=_pad(300), history=_alternating(3, words=2))
    with pytest.raises(PromptTooLong):
        fit(backend, conversation, _run(), reserve=50, render=strict)
    with pytest.raises(PromptTooLong):
        fit(backend, Conversation(system=_pad(300), history=[]), _run(), reserve=50, render=backend.render)


def test_max_prompt_tokens_bounds_the_prompt():
    backend = ScriptedBackend(n_ctx=4096)
    strict = StrictTemplate(backend)
    conversation = Conversation(system="sys", history=_alternating(20))
    prompt = fit(backend, conversation, _run(max_prompt_tokens=100), reserve=50, render=strict)
    assert prompt.tokens <= 100 and "message19 " in prompt.text


def test_a_template_that_raises_is_reported_as_refused():
    backend = ScriptedBackend(n_ctx=4096)
    strict = StrictTemplate(backend)
    conversation = Conversation(system="sys", history=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(TemplateRefused, match="no first user message"):
        fit(backend, conversation, _run(), reserve=50, render=strict)


def test_llama_3_3_real_template_with_tools_through_truncation():
    """Llama 3.3's own template puts the tools in the first user message and refuses a list without one
    (what fit measured before); fitted, a long thread is truncated and rendered with its tools."""
    from assistd.llm.vocab import ChatRenderer

    renderer = ChatRenderer(LLAMA_33.read_text(), "<|begin_of_text|>", "<|eot_id|>")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    with pytest.raises(Exception, match="no first user message"):
        renderer.render([{"role": "system", "content": "sys"}], tools)
    backend = ScriptedBackend(n_ctx=400)
    rendered: list[list[dict[str, Any]]] = []

    def render(messages: list[dict[str, Any]]) -> str:
        rendered.append(messages)
        return renderer.render(messages, tools)

    conversation = Conversation(system="Be brief.", history=_alternating(21))
    prompt = fit(backend, conversation, _run(), reserve=100, render=render)
    assert prompt.tokens <= 300 and prompt.dropped > 0
    assert "get_weather" in prompt.text and "message20 " in prompt.text and "message0 " not in prompt.text
    assert prompt.text.rstrip().endswith("<|start_header_id|>assistant<|end_header_id|>")
    assert all(call[1]["role"] == "user" for call in rendered)
