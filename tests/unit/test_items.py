"""protocol/items.py: client items read into the canonical form (the SDK's item types, checked here with the
SDK's own models), and every mistake a 400 naming the exact param."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.conversations import ConversationItem, Message
from openai.types.responses import ResponseInputItemParam, ResponseItem
from openai.types.responses.response_input_item import ItemReference
from pydantic import TypeAdapter

from assistd.errors import InvalidRequest
from assistd.protocol.items import (
    MAX_TEXT,
    check_include,
    file_refs,
    message_item,
    output_text_part,
    parse_item,
    parse_items,
    view_item,
)
from tests.support import shape_errors

CONVERSATION_ITEM = TypeAdapter(ConversationItem)
RESPONSE_ITEM = TypeAdapter(ResponseItem)
INPUT_ITEM = TypeAdapter(ResponseInputItemParam)


def sdk_model(item: dict[str, Any]) -> Any:
    """The SDK model of a canonical item; also checks it has no key the SDK type lacks."""
    model = CONVERSATION_ITEM.validate_python(item)
    errors = shape_errors(item, type(model), strict=False)
    assert not errors, errors
    return model


def error_of(value: Any, param: str = "input") -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_items(value, param)
    assert info.value.status_code == 400
    return info.value


def test_a_string_is_one_user_message():
    [item] = parse_items("Hello", "input")
    assert item["id"].startswith("msg_") and item["type"] == "message"
    assert item == {
        "id": item["id"],
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_text", "text": "Hello"}],
    }
    assert isinstance(sdk_model(item), Message)
    RESPONSE_ITEM.validate_python(item)


@pytest.mark.parametrize("role", ["user", "system", "developer"])
def test_easy_messages_of_input_roles(role):
    [item] = parse_items([{"role": role, "content": "Be brief."}], "input")
    assert item["role"] == role and item["content"] == [{"type": "input_text", "text": "Be brief."}]
    sdk_model(item)
    RESPONSE_ITEM.validate_python(item)


def test_easy_assistant_message_is_output_text():
    [item] = parse_items([{"role": "assistant", "content": "Hi!"}], "input")
    assert item["content"] == [{"type": "output_text", "text": "Hi!", "annotations": [], "logprobs": []}]
    model = RESPONSE_ITEM.validate_python(item)
    assert type(model).__name__ == "ResponseOutputMessage"
    assert model.content[0].annotations == [] and model.content[0].logprobs == []
    sdk_model(item)


def test_typed_message_with_every_input_part():
    parts = [
        {"type": "input_text", "text": "Look at these"},
        {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
        {"type": "input_image", "file_id": "file-abc"},
        {"type": "input_file", "file_id": "file-pdf"},
        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
        {"type": "input_file", "file_url": "https://example.com/b.pdf", "detail": "high"},
    ]
    item = parse_item({"type": "message", "role": "user", "content": parts, "id": "msg_given"}, "input[0]")
    assert item["id"] == "msg_given"
    content = item["content"]
    assert content[1] == {
        "type": "input_image",
        "detail": "low",
        "file_id": None,
        "image_url": "https://example.com/cat.png",
    }
    assert content[2] == {"type": "input_image", "detail": "auto", "file_id": "file-abc", "image_url": None}
    assert content[3] == {"type": "input_file", "file_id": "file-pdf"}
    assert content[4]["filename"] == "a.pdf" and content[5]["detail"] == "high"
    model = sdk_model(item)
    assert [type(p).__name__ for p in model.content] == [
        "ResponseInputText",
        "ResponseInputImage",
        "ResponseInputImage",
        "ResponseInputFile",
        "ResponseInputFile",
        "ResponseInputFile",
    ]
    assert type(RESPONSE_ITEM.validate_python(item)).__name__ == "ResponseInputMessageItem"
    assert file_refs([item], "items") == [
        ("file-abc", "items[0].content[2].file_id"),
        ("file-pdf", "items[0].content[3].file_id"),
    ]


def test_assistant_message_keeps_annotations_refusals_phase_and_status():
    annotations = [
        {"type": "file_citation", "file_id": "file-1", "filename": "a.txt", "index": 3},
        {"type": "url_citation", "url": "https://x.org", "title": "X", "start_index": 0, "end_index": 4},
        {
            "type": "container_file_citation",
            "container_id": "cntr_1",
            "file_id": "cfile_1",
            "filename": "plot.png",
            "start_index": 1,
            "end_index": 2,
        },
        {"type": "file_path", "file_id": "file-2", "index": 0},
    ]
    item = parse_item(
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_1",
            "status": "incomplete",
            "phase": "final_answer",
            "content": [
                {"type": "output_text", "text": "See [1]", "annotations": annotations, "logprobs": None},
                {"type": "refusal", "refusal": "No."},
            ],
        },
        "input[0]",
    )
    assert item["status"] == "incomplete" and item["phase"] == "final_answer"
    assert item["content"][0] == output_text_part("See [1]", annotations)
    assert item["content"][1] == {"type": "refusal", "refusal": "No."}
    model = RESPONSE_ITEM.validate_python(item)
    assert [a.type for a in model.content[0].annotations] == [a["type"] for a in annotations]
    sdk_model(item)


def test_function_call_and_output():
    call, output, listed = parse_items(
        [
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Rome"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [
                    {"type": "input_text", "text": "21C"},
                    {"type": "input_image", "file_id": "file-9"},
                ],
                "id": "fco_mine",
                "status": "in_progress",
            },
        ],
        "input",
    )
    assert call["id"].startswith("fc_") and call["status"] == "completed"
    assert call == {
        "id": call["id"],
        "type": "function_call",
        "status": "completed",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city":"Rome"}',
    }
    assert output["id"].startswith("fco_") and output["output"] == '{"temp": 21}'
    assert listed["id"] == "fco_mine" and listed["status"] == "in_progress"
    assert listed["output"][1] == {
        "type": "input_image",
        "detail": "auto",
        "file_id": "file-9",
        "image_url": None,
    }
    for item in (call, output, listed):
        sdk_model(item)
        RESPONSE_ITEM.validate_python(item)
    assert file_refs([call, output, listed], "input") == [("file-9", "input[2].output[1].file_id")]


def test_reasoning_item():
    item = parse_item(
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "Thought about it."}],
            "content": [{"type": "reasoning_text", "text": "Step 1..."}],
            "encrypted_content": None,
        },
        "input[0]",
    )
    assert item["id"].startswith("rs_")
    assert item == {
        "id": item["id"],
        "type": "reasoning",
        "status": "completed",
        "summary": [{"type": "summary_text", "text": "Thought about it."}],
        "content": [{"type": "reasoning_text", "text": "Step 1..."}],
    }
    sdk_model(item)
    bare = parse_item({"type": "reasoning", "summary": [], "id": "rs_x"}, "input[0]")
    assert "content" not in bare and bare["id"] == "rs_x"
    sdk_model(bare)


def test_file_search_and_code_interpreter_calls():
    search = parse_item(
        {
            "type": "file_search_call",
            "queries": ["vacation days"],
            "results": [
                {
                    "file_id": "file-1",
                    "filename": "h.txt",
                    "score": 0.9,
                    "text": "25 days",
                    "attributes": {"a": 1},
                }
            ],
        },
        "input[0]",
    )
    assert search["id"].startswith("fs_") and search["results"][0]["score"] == 0.9
    code = parse_item(
        {
            "type": "code_interpreter_call",
            "container_id": "cntr_1",
            "code": "print(1)",
            "outputs": [{"type": "logs", "logs": "1\n"}, {"type": "image", "url": "https://x/y.png"}],
            "status": "interpreting",
        },
        "input[0]",
    )
    assert code["id"].startswith("ci_") and code["status"] == "interpreting"
    bare = parse_item({"type": "code_interpreter_call", "container_id": "cntr_1", "id": "ci_1"}, "x")
    assert bare["code"] is None and bare["outputs"] is None
    for item in (search, code, bare):
        sdk_model(item)
        RESPONSE_ITEM.validate_python(item)
    # reads leave results and outputs out unless `include` names them (as the hosted API does)
    assert view_item(search)["results"] is None and search["results"]
    assert view_item(search, ["file_search_call.results"]) == search
    assert view_item(code)["outputs"] is None
    assert view_item(code, ["code_interpreter_call.outputs"]) == code


def test_item_references_stay_references():
    typed, bare = parse_items([{"type": "item_reference", "id": "msg_1"}, {"id": "fc_2"}], "input")
    assert typed == {"type": "item_reference", "id": "msg_1"}
    assert bare == {"type": "item_reference", "id": "fc_2"}
    ItemReference.model_validate(typed)
    INPUT_ITEM.validate_python(typed)


def test_helpers_make_canonical_items():
    user = message_item("user", "hi")
    assistant = message_item("assistant", "hello", id="msg_a")
    assert assistant["id"] == "msg_a" and assistant["content"][0]["logprobs"] == []
    for item in (user, assistant):
        sdk_model(item)
    part = output_text_part("x", ({"type": "file_path", "file_id": "f", "index": 0},))
    assert isinstance(part["annotations"], list)


def test_include_values():
    assert check_include(["file_search_call.results"]) == ("file_search_call.results",)
    with pytest.raises(InvalidRequest) as info:
        check_include(["file_search_call.results", "everything"])
    assert info.value.param == "include" and "'everything'" in info.value.message


@pytest.mark.parametrize(
    ("value", "param"),
    [
        (5, "input"),
        ({"role": "user", "content": "x"}, "input"),
        ([5], "input[0]"),
        ([{}], "input[0].type"),
        ([{"content": "x"}], "input[0].type"),
        ([{"type": "computer_call"}], "input[0].type"),
        ([{"type": 7}], "input[0].type"),
        ([{"role": "tool", "content": "x"}], "input[0].role"),
        ([{"type": "message", "content": "x"}], "input[0].role"),
        ([{"role": "user"}], "input[0].content"),
        ([{"role": "user", "content": 3}], "input[0].content"),
        (
            [{"role": "user", "content": "ok"}, {"role": "user", "content": [{"type": "text"}]}],
            "input[1].content[0].type",
        ),
        ([{"role": "user", "content": [{"type": "output_text", "text": "x"}]}], "input[0].content[0].type"),
        (
            [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}],
            "input[0].content[0].type",
        ),
        ([{"role": "user", "content": [{"type": "input_text"}]}], "input[0].content[0].text"),
        ([{"role": "user", "content": [{"type": "input_text", "text": 1}]}], "input[0].content[0].text"),
        ([{"role": "user", "content": [{"type": "input_image"}]}], "input[0].content[0].file_id"),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "file_id": "f", "image_url": "https://a/b"}],
                }
            ],
            "input[0].content[0].image_url",
        ),
        (
            [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x"}]}],
            "input[0].content[0].image_url",
        ),
        (
            [{"role": "user", "content": [{"type": "input_image", "file_id": "f", "detail": "max"}]}],
            "input[0].content[0].detail",
        ),
        (
            [{"role": "user", "content": [{"type": "input_file", "file_url": "file:///etc"}]}],
            "input[0].content[0].file_url",
        ),
        ([{"role": "user", "content": [{"type": "input_file"}]}], "input[0].content[0].file_id"),
        ([{"role": "user", "content": "x", "status": "done"}], "input[0].status"),
        ([{"role": "user", "content": "x", "id": "a/b"}], "input[0].id"),
        ([{"role": "user", "content": "x", "id": 3}], "input[0].id"),
        (
            [
                {
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "x", "annotations": [{"type": "x"}]}],
                }
            ],
            "input[0].content[0].annotations[0].type",
        ),
        (
            [
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "output_text",
                            "text": "x",
                            "annotations": [{"type": "file_path", "file_id": "f", "index": -1}],
                        }
                    ],
                }
            ],
            "input[0].content[0].annotations[0].index",
        ),
        (
            [
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "output_text",
                            "text": "x",
                            "annotations": [{"type": "file_path", "file_id": "f", "index": True}],
                        }
                    ],
                }
            ],
            "input[0].content[0].annotations[0].index",
        ),
        ([{"type": "function_call", "name": "f", "arguments": "{}"}], "input[0].call_id"),
        ([{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}], "input[0].arguments"),
        ([{"type": "function_call_output", "call_id": "c"}], "input[0].output"),
        ([{"type": "function_call_output", "call_id": "c", "output": 5}], "input[0].output"),
        (
            [{"type": "function_call_output", "call_id": "c", "output": [{"type": "refusal"}]}],
            "input[0].output[0].type",
        ),
        ([{"type": "function_call_output", "output": "x"}], "input[0].call_id"),
        ([{"type": "reasoning"}], "input[0].summary"),
        (
            [{"type": "reasoning", "summary": [{"type": "reasoning_text", "text": "x"}]}],
            "input[0].summary[0].type",
        ),
        ([{"type": "file_search_call", "queries": [1]}], "input[0].queries[0]"),
        (
            [{"type": "file_search_call", "queries": [], "results": [{"score": "high"}]}],
            "input[0].results[0].score",
        ),
        (
            [{"type": "file_search_call", "queries": [], "results": [{"attributes": {"a": {"b": 1}}}]}],
            "input[0].results[0].attributes.a",
        ),
        ([{"type": "code_interpreter_call", "code": "x"}], "input[0].container_id"),
        (
            [{"type": "code_interpreter_call", "container_id": "c", "outputs": [{"type": "files"}]}],
            "input[0].outputs[0].type",
        ),
        ([{"type": "item_reference"}], "input[0].id"),
    ],
)
def test_mistakes_name_the_param(value, param):
    assert error_of(value).param == param


def test_error_messages_speak_as_the_hosted_api():
    error = error_of([{"type": "message", "role": "user", "content": [{"type": "video"}]}])
    assert error.message.startswith(
        "Invalid value: 'video'. Supported values are: 'input_text', 'input_image',"
    )
    assert error.code == "invalid_value"
    error = error_of([{"role": "user", "content": 3}])
    assert error.message == (
        "Invalid type for 'input[0].content': expected a string or an array of content parts, "
        "but got an integer instead."
    )
    assert error_of([{"role": "user"}]).message == "Missing required parameter: 'input[0].content'."


def test_hostile_input_is_a_400():
    assert error_of("x" * (MAX_TEXT + 1)).code == "string_above_max_length"
    assert error_of([{"role": "user", "content": "a\x00b"}]).param == "input[0].content"
    assert error_of(["x"] * 20, "items").param == "items[0]"
    with pytest.raises(InvalidRequest) as info:
        parse_items([{"role": "user", "content": "x"}] * 21, "items", max_items=20)
    assert info.value.param == "items" and info.value.code == "array_above_max_length"
    assert error_of([{"role": "user", "content": ["x"] * 1001}]).param == "input[0].content"
    # nesting: the parser reads only known fields and checks each one's type, without recursion
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    assert error_of([{"role": "user", "content": deep}]).param == "input[0].content[0]"
    deep_object: Any = {}
    for _ in range(100_000):
        deep_object = {"a": deep_object}
    results = [{"attributes": {"a": deep_object}}]
    assert error_of([{"type": "file_search_call", "queries": [], "results": results}]).param == (
        "input[0].results[0].attributes.a"
    )
    assert error_of(
        [{"type": "file_search_call", "queries": [], "results": [{"attributes": {1: "a"}}]}]
    ).param == ("input[0].results[0].attributes")
    assert error_of(
        [{"type": "function_call", "call_id": "c" * 513, "name": "f", "arguments": ""}]
    ).param == ("input[0].call_id")
    assert error_of([{"role": "user", "content": "x", "id": "msg_\x00"}]).param == "input[0].id"
    nan = float("nan")
    assert error_of([{"type": "file_search_call", "queries": [], "results": [{"score": nan}]}]).param == (
        "input[0].results[0].score"
    )
