"""The native call syntaxes: replies parsed into calls as each family writes them, and grammars that admit
exactly the family's syntax (checked by llama.cpp's own grammar parser where it loads)."""

from __future__ import annotations

import json

import pytest

from assistd.tools.calls import FORMATS, validate_arguments

WEATHER = {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}


def one(fmt: str, text: str) -> list[tuple[str, dict]]:
    reply = FORMATS[fmt].parse(text)
    return [(c.name, json.loads(c.arguments)) for c in reply.calls]


def test_deepseek_r1() -> None:
    text = (
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        '{"city": "Rome"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n'
        '```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'
    )
    assert one("deepseek-r1", text) == [("get_weather", {"city": "Rome"}), ("get_weather", {"city": "Paris"})]
    assert FORMATS["deepseek-r1"].parse(text).text == ""


def test_deepseek_v31() -> None:
    text = (
        '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Rome"}'
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
    )
    assert one("deepseek-v3.1", text) == [("get_weather", {"city": "Rome"})]


def test_mistral_both_forms() -> None:
    assert one(
        "mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Rome"}, "id": "a1b2c3d4e"}]'
    ) == [("get_weather", {"city": "Rome"})]
    text = '[TOOL_CALLS]get_weather[ARGS]{"city": "Rome"}[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}'
    assert one("mistral-args", text) == [
        ("get_weather", {"city": "Rome"}),
        ("get_weather", {"city": "Paris"}),
    ]
    assert one("mistral-args", '[TOOL_CALLS]get_weather[CALL_ID]abc123def[ARGS]{"city": "Rome"}') == [
        ("get_weather", {"city": "Rome"})
    ]


def test_harmony() -> None:
    text = '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Rome"}'
    assert one("harmony", text) == [("get_weather", {"city": "Rome"})]
    text = (
        '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Rome"}'
        "<|call|>"
    )
    assert one("harmony", text) == [("get_weather", {"city": "Rome"})]


@pytest.mark.parametrize("fmt", ["deepseek-r1", "deepseek-v3.1", "mistral", "mistral-args", "harmony"])
def test_rendered_calls_parse_back(fmt: str) -> None:
    f = FORMATS[fmt]
    calls = [("get_weather", '{"city": "Rome"}')]
    if not f.single_call:
        calls.append(("get_time", "{}"))
    parsed = f.parse(f.render_calls(calls))
    assert [(c.name, json.loads(c.arguments)) for c in parsed.calls] == [(n, json.loads(a)) for n, a in calls]


def _grammar_ok(grammar: str) -> None:
    import llama_cpp

    assert llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) is not None


@pytest.mark.parametrize("fmt", ["deepseek-r1", "deepseek-v3.1", "mistral", "mistral-args", "harmony"])
def test_grammars_compile(fmt: str) -> None:
    f = FORMATS[fmt]
    for grammar in (
        f.grammar([WEATHER, TIME]),
        f.grammar([WEATHER, TIME], continuation=True),
        f.grammar([WEATHER, TIME], name="get_weather"),
        f.grammar([WEATHER, TIME], parallel=False),
    ):
        _grammar_ok(grammar)
    assert validate_arguments(WEATHER["parameters"], '{"city": "Rome"}') is None
