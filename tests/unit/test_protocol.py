"""Request parsing: one 400 naming the client's `param` for any mistake; unknown fields logged and ignored."""

from __future__ import annotations

import logging

import pytest

from assistd.errors import InvalidRequest
from assistd.protocol.assistants import AssistantCreate
from assistd.protocol.messages import MessageCreate
from assistd.protocol.threads import ThreadCreate
from assistd.protocol.tools import dump_response_format, dump_tools


def param_of(model, body) -> str | None:
    with pytest.raises(InvalidRequest) as info:
        model.parse(body)
    assert info.value.status_code == 400
    return info.value.param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "model"),
        (
            {"model": "m", "tools": [{"type": "function", "function": {"name": "a b"}}]},
            "tools[0].function.name",
        ),
        ({"model": "m", "tools": [{"type": "web"}]}, "tools[0].type"),
        ({"model": "m", "tools": [{}]}, "tools[0].type"),
        ({"model": "m", "response_format": {"type": "xml"}}, "response_format.type"),
        ({"model": "m", "response_format": "json"}, "response_format"),
        (
            {"model": "m", "response_format": {"type": "json_schema", "json_schema": {}}},
            "response_format.json_schema.name",
        ),
        ({"model": "m", "metadata": {"a": 1}}, "metadata.a"),
        ({"model": "m", "temperature": "hot"}, "temperature"),
    ],
)
def test_assistant_params(body, param):
    assert param_of(AssistantCreate, body) == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"role": "user", "content": []}, "content"),
        ({"role": "user", "content": None}, "content"),
        ({"role": "user", "content": [{"type": "text"}]}, "content[0].text"),
        ({"role": "user", "content": ["hi"]}, "content[0]"),
        (
            {"role": "user", "content": [{"type": "image_file", "image_file": {}}]},
            "content[0].image_file.file_id",
        ),
        ({"role": "user", "content": "x", "attachments": [{"tools": []}]}, "attachments[0].file_id"),
        ({"role": "tool", "content": "x"}, "role"),
    ],
)
def test_message_params(body, param):
    assert param_of(MessageCreate, body) == param


def test_nested_params_keep_their_index():
    body = {"messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": []}]}
    assert param_of(ThreadCreate, body) == "messages[1].content"


def test_empty_content_message_says_why():
    with pytest.raises(InvalidRequest) as info:
        MessageCreate.parse({"role": "user", "content": []})
    assert "at least 1" in info.value.message


def test_body_must_be_an_object():
    for body in ([], "text", 3):
        assert param_of(AssistantCreate, body) is None
    assert ThreadCreate.parse(None).messages is None


def test_unknown_fields_are_logged_and_ignored(caplog):
    with caplog.at_level(logging.WARNING, logger="assistd.requests"):
        req = AssistantCreate.parse({"model": "m", "reasoning_effort": "low", "x_new": 1})
    assert req.provided() == {"model", "reasoning_effort"}  # a known field since issue 10 (Agency Swarm)
    assert "x_new" in caplog.text and "reasoning_effort" not in caplog.text


def test_dumps():
    req = AssistantCreate.parse(
        {
            "model": "m",
            "tools": [
                {"type": "file_search"},
                {"type": "file_search", "file_search": {"max_num_results": 3}},
                {"type": "function", "function": {"name": "f"}},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "n", "schema": {"type": "object"}},
            },
        }
    )
    assert dump_tools(req.tools) == [
        {"type": "file_search"},
        {"type": "file_search", "file_search": {"max_num_results": 3}},
        {"type": "function", "function": {"name": "f", "strict": False}},
    ]
    assert dump_response_format(req.response_format) == {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": {"type": "object"}},
    }
