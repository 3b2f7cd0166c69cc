"""Parsers of each tool-call format, on strings like the ones models really write."""

from __future__ import annotations

import json

import pytest

from assistd.tools.calls import FORMATS, ParsedCall, format_for

hermes, llama3, generic = FORMATS["hermes"], FORMATS["llama3"], FORMATS["generic"]


def args(call: ParsedCall) -> dict:
    return json.loads(call.arguments)


# ------------------------------------------------------------------------------------------- hermes
def test_hermes_single_call_with_prose_around():
    text = (
        "Let me check the weather for you.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n'
        "</tool_call>\nOne moment."
    )
    reply = hermes.parse(text)
    assert [c.name for c in reply.calls] == ["get_weather"]
    assert args(reply.calls[0]) == {"city": "Paris", "unit": "celsius"}
    assert reply.text == "Let me check the weather for you.\n\nOne moment."


def test_hermes_several_blocks_and_nested_arguments():
    text = (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "book", "arguments": {"guests": [{"name": "Ann", "age": 31}], '
        '"options": {"sea_view": true, "budget": {"max": 250.5, "currency": "EUR"}}}}\n</tool_call>'
    )
    reply = hermes.parse(text)
    assert [c.name for c in reply.calls] == ["get_weather", "book"]
    assert args(reply.calls[1])["options"]["budget"] == {"max": 250.5, "currency": "EUR"}
    assert args(reply.calls[1])["guests"][0]["age"] == 31
    assert reply.text == ""


def test_hermes_malformed_block_stays_text_and_good_ones_parse():
    text = (
        '<tool_call>\n{"name": "a", "arguments": {"x": }\n</tool_call>\n'
        '<tool_call>{"name": "b", "arguments": {"y": 2}}</tool_call>'
    )
    reply = hermes.parse(text)
    assert [c.name for c in reply.calls] == ["b"]
    assert '"x": }' in reply.text  # nothing is silently dropped


def test_hermes_repairs_trailing_commas_truncation_and_string_arguments():
    assert args(hermes.parse('<tool_call>{"name": "f", "arguments": {"a": 1,},}</tool_call>').calls[0]) == {
        "a": 1
    }
    truncated = hermes.parse('<tool_call>\n{"name": "f", "arguments": {"q": "cats and d')
    assert truncated.calls and args(truncated.calls[0]) == {"q": "cats and d"}
    stringified = hermes.parse('<tool_call>{"name": "f", "arguments": "{\\"a\\": [1, 2]}"}</tool_call>')
    assert args(stringified.calls[0]) == {"a": [1, 2]}


def test_hermes_no_call_and_no_arguments():
    assert hermes.parse("  The answer is 42.  ").calls == []
    assert hermes.parse("  The answer is 42.  ").text == "The answer is 42."
    reply = hermes.parse('<tool_call>{"name": "now"}</tool_call>')
    assert reply.calls == [ParsedCall("now", "{}")]


def test_hermes_unclosed_blocks_split_at_next_open():
    text = '<tool_call>{"name": "a", "arguments": {}}\n<tool_call>{"name": "b", "arguments": {"k": "v"}}'
    assert [c.name for c in hermes.parse(text).calls] == ["a", "b"]


# ------------------------------------------------------------------------------------------- llama 3
def test_llama3_single_call_and_python_tag():
    reply = llama3.parse('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Lima"}}')
    assert reply.calls == [ParsedCall("get_weather", '{"city": "Lima"}')]
    assert reply.text == ""


def test_llama3_several_calls_separated_by_semicolon_or_newline():
    text = (
        '{"name": "a", "parameters": {"n": 1}}; '
        '{"name": "b", "parameters": {"deep": {"list": [1, {"x": null}]}}}\n'
        '{"name": "c", "parameters": {}}'
    )
    reply = llama3.parse(text)
    assert [c.name for c in reply.calls] == ["a", "b", "c"]
    assert args(reply.calls[1]) == {"deep": {"list": [1, {"x": None}]}}
    assert reply.text == ""


def test_llama3_prose_around_and_json_that_is_not_a_call():
    text = 'Sure. {"name": "search", "parameters": {"q": "llamas"}} Here is data: {"a": 1}'
    reply = llama3.parse(text)
    assert [c.name for c in reply.calls] == ["search"]
    assert reply.text.startswith("Sure.") and '{"a": 1}' in reply.text


def test_llama3_accepts_arguments_key_list_form_and_ignores_malformed():
    assert llama3.parse('[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "parameters": {}}]').calls == [
        ParsedCall("a", '{"x": 1}'),
        ParsedCall("b", "{}"),
    ]
    broken = llama3.parse('{"name": "a", "parameters": {"x": 1,,}')
    assert broken.calls == [] and broken.text == '{"name": "a", "parameters": {"x": 1,,}'


# ------------------------------------------------------------------------------------------- generic
def test_generic_list_in_one_block_like_smollm2():
    text = (
        '<tool_call>[\n{"name": "get_weather", "arguments": {"city": "Oslo"}},\n'
        '{"name": "get_time", "arguments": {"timezone": "Asia/Tokyo"}}\n]</tool_call>'
    )
    reply = generic.parse(text)
    assert [c.name for c in reply.calls] == ["get_weather", "get_time"]
    assert args(reply.calls[1]) == {"timezone": "Asia/Tokyo"}


def test_generic_single_object_block_prose_and_empty_list():
    reply = generic.parse(
        'I will look. <tool_call>{"name": "f", "arguments": {"a": {"b": [true]}}}</tool_call>'
    )
    assert reply.text == "I will look." and args(reply.calls[0]) == {"a": {"b": [True]}}
    empty = generic.parse("<tool_call>[]</tool_call>")
    assert empty.calls == []


def test_generic_bare_json_or_fenced_reply_is_a_call():
    assert generic.parse('{"name": "f", "arguments": {"x": 1}}').calls == [ParsedCall("f", '{"x": 1}')]
    fenced = '```json\n[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"y": "z"}}]\n```'
    assert [c.name for c in generic.parse(fenced).calls] == ["f", "g"]


def test_generic_prose_with_json_is_not_a_call():
    text = 'Here is an example object: {"name": "Bob", "age": 3} and that is all.'
    assert generic.parse(text).calls == []
    malformed = '<tool_call>[{"name": "f", "arguments": {"x": tru}]</tool_call>'
    assert generic.parse(malformed).calls == [] and generic.parse(malformed).text == malformed


@pytest.mark.parametrize("fmt", [hermes, llama3, generic], ids=lambda f: f.name)
def test_every_format_parses_what_it_renders(fmt):
    calls = [("get_weather", '{"city": "Paris"}'), ("book", '{"guests": [{"n": 1}], "x": "a\\"b"}')]
    rendered = fmt.render_calls(calls)
    assert [(c.name, json.loads(c.arguments)) for c in fmt.parse(rendered).calls] == [
        (n, json.loads(a)) for n, a in calls
    ]
    assert rendered.lstrip().startswith(fmt.start_marker)


def test_format_for_picks_by_template_text():
    assert format_for(None).name == "generic"
    assert format_for("{{ '<|im_start|>' + m['content'] }}").name == "generic"
    assert format_for("{% if tools %}<tool_call>{% endif %}").name == "hermes"
    llama = "{% if tools %}{{ '<|start_header_id|>ipython<|end_header_id|>' }}{% endif %}"
    assert format_for(llama).name == "llama3"
    assert format_for("{{ '<|start_header_id|>' + message['role'] }}").name == "generic"
