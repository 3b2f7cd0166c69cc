"""The Responses API's state with the official SDK against the real server: previous_response_id chains and
input token counts, conversations, background responses (poll, cancel, resume a stream), store: false,
retrieve/delete/input_items pages, include; bad input as the hosted API answers it (status, an OpenAI error
body naming the param), project isolation and nothing half-written."""

from __future__ import annotations

import time

import openai
import pytest
from openai.types.responses.response_item_list import ResponseItemList

from tests.contract.helpers import api_error
from tests.contract.responses_support import MODEL, check_item, check_response, check_stream, sse, wait_done
from tests.support import assert_shape, raw_json

pytestmark = [pytest.mark.contract, pytest.mark.model]

HI = {"input": "Hi!", "temperature": 0, "max_output_tokens": 32}
LONG = "Write a long story about a dragon who lives in a castle by the sea."


# ------------------------------------------------------------------------------------------------- chains
def test_previous_response_id_chain_and_input_token_counts(client):
    first = client.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=16)
    second = client.responses.create(
        model=MODEL, previous_response_id=first.id, input="What is my name?", max_output_tokens=16
    )
    third_input = "And what did I ask before?"
    counted = client.responses.input_tokens.count(
        model=MODEL, previous_response_id=second.id, input=third_input
    )
    raw = client.responses.input_tokens.with_raw_response.count(
        model=MODEL, previous_response_id=second.id, input=third_input
    )
    assert raw_json(raw) == {"object": "response.input_tokens", "input_tokens": counted.input_tokens}
    third = client.responses.create(
        model=MODEL, previous_response_id=second.id, input=third_input, max_output_tokens=16
    )
    assert first.usage.input_tokens < second.usage.input_tokens < third.usage.input_tokens
    assert third.usage.input_tokens == counted.input_tokens  # usage counts the whole prompt, history too
    assert third.previous_response_id == second.id
    # the input items of a response are its own, not the chain's
    assert [i.content[0].text for i in client.responses.input_items.list(third.id).data] == [third_input]
    alone = client.responses.input_tokens.count(model=MODEL, input="Hi!", instructions="Be brief.")
    made = client.responses.create(model=MODEL, input="Hi!", instructions="Be brief.", max_output_tokens=16)
    assert made.usage.input_tokens == alone.input_tokens


def test_conversation_holds_input_and_output_in_order(client):
    conversation = client.conversations.create(metadata={"topic": "greeting"})
    first = client.responses.create(
        model=MODEL, conversation=conversation.id, input="Hi, I am Ada.", max_output_tokens=16
    )
    second = client.responses.create(
        model=MODEL, conversation={"id": conversation.id}, input="Who am I?", max_output_tokens=16
    )
    check_response(raw_json(client.responses.with_raw_response.retrieve(second.id)))
    assert first.conversation.id == second.conversation.id == conversation.id
    assert second.usage.input_tokens > first.usage.input_tokens
    items = client.conversations.items.list(conversation.id, order="asc", limit=100).data
    expected = [
        ("user", "Hi, I am Ada."),
        ("assistant", first.output_text),
        ("user", "Who am I?"),
        ("assistant", second.output_text),
    ]
    assert [(i.role, i.content[0].text) for i in items] == expected
    assert items[1].id == first.output[0].id and items[3].id == second.output[0].id
    counted = client.responses.input_tokens.count(model=MODEL, conversation=conversation.id, input="Bye")
    third = client.responses.create(
        model=MODEL, conversation=conversation.id, input="Bye", max_output_tokens=16
    )
    assert third.usage.input_tokens == counted.input_tokens
    items += client.conversations.items.list(conversation.id, order="asc", after=items[-1].id).data
    assert len(items) == 6

    with api_error(openai.BadRequestError, 400, param="previous_response_id", message="conversation"):
        client.responses.create(
            model=MODEL, conversation=conversation.id, previous_response_id=first.id, input="x"
        )
    with api_error(openai.NotFoundError, 404, param="conversation", message="conv_missing"):
        client.responses.create(model=MODEL, conversation="conv_missing", input="x")
    # nothing half-written: a request that fails after its checks began leaves the conversation as it was
    with api_error(openai.NotFoundError, 404, param="input[1].id"):
        client.responses.create(
            model=MODEL,
            conversation=conversation.id,
            input=[{"role": "user", "content": "x"}, {"type": "item_reference", "id": "msg_missing"}],
        )
    with api_error(openai.NotFoundError, 404, param="tools[0].vector_store_ids[0]"):
        client.responses.create(
            model=MODEL,
            conversation=conversation.id,
            input="x",
            tools=[{"type": "file_search", "vector_store_ids": ["vs_missing"]}],
        )
    after = client.conversations.items.list(conversation.id, order="asc", limit=100).data
    assert [i.id for i in after] == [i.id for i in items]


# --------------------------------------------------------------------------------------------- background
def test_background_poll_and_resume_the_stream(client, server):
    created = client.responses.with_raw_response.create(model=MODEL, background=True, **HI)
    body = raw_json(created)
    check_response(body)
    assert body["status"] in ("queued", "in_progress") and body["background"] is True
    assert body["output"] == [] and body["usage"] is None
    done = wait_done(client, body["id"])
    assert done.status == "completed" and done.output_text

    # the whole stream, again: from response.created
    events = sse(server.base_url, "GET", f"/v1/responses/{done.id}", params={"stream": "true"})
    final = check_stream(events)
    assert final == raw_json(client.responses.with_raw_response.retrieve(done.id))
    # resumed after event N: N+1 on
    n = 3
    rest = sse(
        server.base_url,
        "GET",
        f"/v1/responses/{done.id}",
        params={"stream": "true", "starting_after": str(n)},
    )
    assert rest == events[n + 1 :]
    check_stream(rest, first=n + 1)
    # the SDK: raw retrieve with stream=True and starting_after, and responses.stream(response_id=...)
    resumed = list(client.responses.retrieve(done.id, stream=True, starting_after=n))
    assert [e.sequence_number for e in resumed] == list(range(n + 1, len(events)))
    with client.responses.stream(response_id=done.id) as stream:
        replayed = [e.type for e in stream]
        assert stream.get_final_response().output_text == done.output_text
    assert replayed == [e["type"] for e in events]


def test_cancel_and_store(client):
    started = client.responses.create(model=MODEL, input=LONG, background=True, max_output_tokens=400)
    cancelled = client.responses.cancel(started.id)
    assert cancelled.status == "cancelled" and cancelled.id == started.id
    check_response(raw_json(client.responses.with_raw_response.retrieve(started.id)))
    time.sleep(0.5)
    assert client.responses.retrieve(started.id).status == "cancelled"  # the worker does not overwrite it
    again = client.responses.cancel(started.id)  # cancelling an ended response answers it unchanged
    assert again.status == "cancelled"

    plain = client.responses.create(model=MODEL, input="Hi!", max_output_tokens=16)
    with api_error(openai.BadRequestError, 400, param="response_id", message="background"):
        client.responses.cancel(plain.id)
    with api_error(openai.BadRequestError, 400, param="store"):
        client.responses.create(model=MODEL, input="x", background=True, store=False)

    unstored, body = (lambda raw: (raw.parse(), raw_json(raw)))(
        client.responses.with_raw_response.create(model=MODEL, input="Hi!", store=False, max_output_tokens=16)
    )
    check_response(body)
    assert body["store"] is False and unstored.output_text
    with api_error(openai.NotFoundError, 404, param="response_id", message=unstored.id):
        client.responses.retrieve(unstored.id)
    with api_error(openai.NotFoundError, 404, param="previous_response_id", message=unstored.id):
        client.responses.create(model=MODEL, input="x", previous_response_id=unstored.id)


# ------------------------------------------------------------------------------------ reads and deletion
def test_retrieve_input_items_pages_and_delete(client):
    items = [{"role": "user", "content": f"note {i}"} for i in range(5)]
    response = client.responses.create(model=MODEL, input=items, max_output_tokens=16)
    raw = client.responses.input_items.with_raw_response.list(response.id)
    body = raw_json(raw)
    assert_shape(body, ResponseItemList)
    ResponseItemList.model_validate(body)
    for item in body["data"]:
        check_item(item)
    texts = [i["content"][0]["text"] for i in body["data"]]
    assert texts == [f"note {i}" for i in reversed(range(5))]  # newest first by default
    ids = [i["id"] for i in body["data"]]
    assert (body["first_id"], body["last_id"], body["has_more"]) == (ids[0], ids[-1], False)

    page = client.responses.input_items.list(response.id, order="asc", limit=2)
    assert [i.id for i in page.data] == ids[::-1][:2] and page.has_more is True
    assert (page.first_id, page.last_id) == (ids[-1], ids[-2])
    nxt = client.responses.input_items.list(response.id, order="asc", limit=2, after=page.last_id)
    assert [i.id for i in nxt.data] == ids[::-1][2:4] and nxt.has_more is True
    walked = [i.id for i in client.responses.input_items.list(response.id, order="asc", limit=2)]
    assert walked == ids[::-1]  # the SDK's auto-pagination follows `after`

    for include in (
        ["file_search_call.results"],
        ["code_interpreter_call.outputs", "message.output_text.logprobs"],
        ["reasoning.encrypted_content"],
    ):
        assert client.responses.retrieve(response.id, include=include).id == response.id
        assert client.responses.input_items.list(response.id, include=include).data
    with api_error(openai.BadRequestError, 400, param="include", message="bogus"):
        client.responses.retrieve(response.id, include=["bogus"])  # type: ignore[list-item]
    with api_error(openai.BadRequestError, 400, param="include", message="bogus"):
        client.responses.create(model=MODEL, input="x", include=["bogus"])  # type: ignore[list-item]

    deleted = client.responses.with_raw_response.delete(response.id)
    assert deleted.http_response.status_code == 200
    assert raw_json(deleted) == {"id": response.id, "object": "response", "deleted": True}
    for call in (
        lambda: client.responses.retrieve(response.id),
        lambda: client.responses.input_items.list(response.id),
        lambda: client.responses.delete(response.id),
        lambda: client.responses.cancel(response.id),
    ):
        with api_error(openai.NotFoundError, 404, param="response_id", message=response.id):
            call()


def test_projects_are_isolated(client, client_b):
    response = client.responses.create(model=MODEL, input="Hi!", max_output_tokens=16)
    for call in (
        lambda: client_b.responses.retrieve(response.id),
        lambda: client_b.responses.input_items.list(response.id),
        lambda: client_b.responses.delete(response.id),
        lambda: client_b.responses.cancel(response.id),
    ):
        with api_error(openai.NotFoundError, 404, param="response_id"):
            call()
    with api_error(openai.NotFoundError, 404, param="previous_response_id", message=response.id):
        client_b.responses.create(model=MODEL, input="x", previous_response_id=response.id)
    assert client.responses.retrieve(response.id).status == response.status


# ------------------------------------------------------------------------------------------- bad requests
@pytest.mark.parametrize(
    ("params", "status", "param", "message"),
    [
        ({"model": "no-such-model"}, 400, "model", "no-such-model"),
        ({"previous_response_id": "resp_missing"}, 404, "previous_response_id", "resp_missing"),
        ({"max_output_tokens": 2**63}, 400, "max_output_tokens", None),
        ({"max_output_tokens": 0}, 400, "max_output_tokens", None),
        ({"max_tool_calls": 2**63}, 400, "max_tool_calls", None),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, 400, "metadata", None),
        ({"temperature": 3}, 400, "temperature", None),
        ({"input": [{"role": "wizard", "content": "x"}]}, 400, "input[0].role", "wizard"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_txt", "text": "x"}]}]},
            400,
            "input[0].content[0].type",
            "input_txt",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, 400, "input[0].call_id", None),
        ({"input": [{"type": "no_such_item"}]}, 400, "input[0].type", None),
        ({"tools": [{"type": "function", "name": "bad name!"}]}, 400, "tools[0].name", None),
        ({"tool_choice": "sometimes"}, 400, "tool_choice", None),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, 400, "text.format.schema", None),
        ({"stream": True, "previous_response_id": "resp_missing"}, 404, "previous_response_id", None),
        ({"tool_choice": {"type": "function", "name": "nope"}}, 400, "tool_choice", "nope"),
        ({"tool_choice": "required"}, 400, "tool_choice", None),
        ({"tool_choice": {"type": "file_search"}}, 400, "tool_choice", "file_search"),
        (
            {
                "tools": [{"type": "function", "name": "f"}],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "function", "name": "g"}],
                },
            },
            400,
            "tool_choice.tools[0]",
            "'g'",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]},
            400,
            "input[0].call_id",
            "call_nope",
        ),
    ],
)
def test_bad_requests_name_the_param(client, params, status, param, message):
    kind = openai.NotFoundError if status == 404 else openai.BadRequestError
    with api_error(kind, status, param=param, message=message):
        client.responses.create(**{"model": MODEL, "input": "x", **params})
