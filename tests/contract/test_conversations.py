"""Conversations with the official SDK against the real server: create (items, metadata), retrieve, update,
delete; items list (order, pages), create, retrieve, delete; bad input as the hosted API answers it; a thread
copied into a conversation through assistd's endpoint and through `assistd conversations from-thread`.
No model reply is needed."""

from __future__ import annotations

import os
import subprocess
import sys

import openai
import pytest
from openai.types.conversations import Conversation, ConversationDeletedResource, ConversationItemList
from pydantic import TypeAdapter

from tests.contract.helpers import api_error, shaped, upload
from tests.support import KEY_A, KEY_B, assert_shape, png_bytes, raw_json, shape_errors

pytestmark = pytest.mark.contract

ITEM = TypeAdapter(openai.types.conversations.ConversationItem)


def item_shape(body: dict) -> None:
    """A single item: the SDK's item type of its `type`, no key the type lacks."""
    model = ITEM.validate_python(body)
    assert not shape_errors(body, type(model), strict=False), shape_errors(body, type(model), strict=False)


def conversation_with(client, n: int) -> tuple[Conversation, list[str]]:
    conversation = client.conversations.create(
        items=[{"role": "user", "content": f"message {i}"} for i in range(n)]
    )
    ids = [item.id for item in client.conversations.items.list(conversation.id, order="asc", limit=100).data]
    return conversation, ids


def test_create_retrieve_update_delete(client):
    conversation = shaped(
        client.conversations.with_raw_response.create(
            items=[
                {"role": "system", "content": "Be brief."},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                {"role": "assistant", "content": "Hello!"},
            ],
            metadata={"topic": "greeting"},
        ),
        Conversation,
    )
    assert conversation.id.startswith("conv_") and conversation.object == "conversation"
    assert conversation.metadata == {"topic": "greeting"} and conversation.created_at > 0
    again = shaped(client.conversations.with_raw_response.retrieve(conversation.id), Conversation)
    assert again == conversation

    updated = shaped(
        client.conversations.with_raw_response.update(conversation.id, metadata={"topic": "farewell"}),
        Conversation,
    )
    assert updated.metadata == {"topic": "farewell"}
    assert client.conversations.retrieve(conversation.id).metadata == {"topic": "farewell"}

    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [(i.role, i.content[0].type) for i in items] == [
        ("system", "input_text"),
        ("user", "input_text"),
        ("assistant", "output_text"),
    ]
    assert items[2].content[0].text == "Hello!" and items[2].content[0].annotations == []

    deleted = shaped(
        client.conversations.with_raw_response.delete(conversation.id), ConversationDeletedResource
    )
    assert deleted.id == conversation.id and deleted.deleted is True
    with api_error(openai.NotFoundError, 404, param="conversation_id", message=conversation.id):
        client.conversations.retrieve(conversation.id)
    with api_error(openai.NotFoundError, 404, param="conversation_id"):
        client.conversations.items.list(conversation.id)


def test_create_without_anything(client):
    conversation = client.conversations.create()
    assert conversation.metadata == {}
    page = raw_json(client.conversations.items.with_raw_response.list(conversation.id))
    assert page == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


def test_items_list_newest_first_and_pages(client):
    conversation, ids = conversation_with(client, 5)
    assert len(ids) == 5 and all(i.startswith("msg_") for i in ids)

    raw = client.conversations.items.with_raw_response.list(conversation.id)
    body = raw_json(raw)
    assert_shape(body, ConversationItemList)
    ConversationItemList.model_validate(body)
    assert [item["id"] for item in body["data"]] == ids[::-1]  # desc by default, as hosted
    assert body["first_id"] == ids[-1] and body["last_id"] == ids[0] and body["has_more"] is False

    first = raw_json(client.conversations.items.with_raw_response.list(conversation.id, limit=2, order="asc"))
    assert [i["id"] for i in first["data"]] == ids[:2]
    assert first["first_id"] == ids[0] and first["last_id"] == ids[1] and first["has_more"] is True
    second = client.conversations.items.list(conversation.id, limit=2, order="asc", after=ids[1])
    assert [i.id for i in second.data] == ids[2:4] and second.has_more is True
    last = client.conversations.items.list(conversation.id, limit=2, order="asc", after=ids[3])
    assert [i.id for i in last.data] == ids[4:] and last.has_more is False
    back = client.conversations.items.list(conversation.id, limit=2, after=ids[2])
    assert [i.id for i in back.data] == [ids[1], ids[0]] and back.has_more is False
    # the SDK's auto-pagination follows last_id
    paged = client.conversations.items.list(conversation.id, limit=2, order="asc")
    assert [item.id for item in paged] == ids

    with api_error(openai.BadRequestError, 400, param="limit"):
        client.conversations.items.list(conversation.id, limit=101)
    with api_error(openai.BadRequestError, 400, param="after"):
        client.conversations.items.list(conversation.id, after="msg_unknown")


def test_items_create_retrieve_delete(client):
    file = upload(client, b"%PDF-1.4 fake", name="doc.pdf", purpose="user_data")
    conversation, ids = conversation_with(client, 1)
    raw = client.conversations.items.with_raw_response.create(
        conversation.id,
        items=[
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Rome"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Read this"},
                    {"type": "input_file", "file_id": file.id},
                    {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
                ],
            },
            {
                "type": "reasoning",
                "id": "rs_mine",
                "summary": [{"type": "summary_text", "text": "Thinking."}],
            },
        ],
    )
    body = raw_json(raw)
    assert_shape(body, ConversationItemList)
    created = raw.parse()
    assert [i.type for i in created.data] == ["function_call", "function_call_output", "message", "reasoning"]
    assert (
        created.first_id == created.data[0].id and created.last_id == "rs_mine" and created.has_more is False
    )
    call, output, message, reasoning = created.data
    assert reasoning.summary[0].text == "Thinking."
    assert call.id.startswith("fc_") and call.status == "completed" and call.arguments == '{"city": "Rome"}'
    assert output.id.startswith("fco_") and output.call_id == "call_1"
    assert message.content[1].file_id == file.id and message.content[2].detail == "low"
    for item in body["data"]:
        item_shape(item)

    raw_item = client.conversations.items.with_raw_response.retrieve(call.id, conversation_id=conversation.id)
    assert raw_json(raw_item) == body["data"][0]
    item_shape(raw_json(raw_item))
    listed = client.conversations.items.list(conversation.id, order="asc").data
    assert [i.id for i in listed] == [ids[0], call.id, output.id, message.id, "rs_mine"]

    after_delete = shaped(
        client.conversations.items.with_raw_response.delete(output.id, conversation_id=conversation.id),
        Conversation,
    )
    assert after_delete.id == conversation.id
    assert [i.id for i in client.conversations.items.list(conversation.id, order="asc").data] == [
        ids[0],
        call.id,
        message.id,
        "rs_mine",
    ]
    with api_error(openai.NotFoundError, 404, param="item_id", message=output.id):
        client.conversations.items.retrieve(output.id, conversation_id=conversation.id)
    with api_error(openai.NotFoundError, 404, param="item_id"):
        client.conversations.items.delete(output.id, conversation_id=conversation.id)
    # an id already in the conversation is refused, nothing of the request written
    with api_error(openai.BadRequestError, 400, param="items[1].id", message="rs_mine"):
        client.conversations.items.create(
            conversation.id,
            items=[{"role": "user", "content": "new"}, {"type": "item_reference", "id": "rs_mine"}],
        )
    assert len(client.conversations.items.list(conversation.id).data) == 4
    # an item reference brings in an item of another conversation of the project
    other = client.conversations.create()
    copied = client.conversations.items.create(other.id, items=[{"type": "item_reference", "id": message.id}])
    assert copied.data[0].id == message.id and copied.data[0].content[0].text == "Read this"


def test_include_shows_results_and_outputs(client):
    search = {
        "type": "file_search_call",
        "id": "fs_1",
        "queries": ["vacation"],
        "status": "completed",
        "results": [{"file_id": "file-1", "filename": "h.txt", "score": 0.5, "text": "25 days"}],
    }
    code = {
        "type": "code_interpreter_call",
        "id": "ci_1",
        "container_id": "cntr_1",
        "code": "print(1)",
        "outputs": [{"type": "logs", "logs": "1\n"}],
        "status": "completed",
    }
    conversation = client.conversations.create(items=[search, code])
    plain = client.conversations.items.list(conversation.id, order="asc").data
    assert plain[0].results is None and plain[1].outputs is None
    full = client.conversations.items.list(
        conversation.id, order="asc", include=["file_search_call.results", "code_interpreter_call.outputs"]
    ).data
    assert full[0].results[0].text == "25 days" and full[1].outputs[0].logs == "1\n"
    one = client.conversations.items.retrieve(
        "fs_1", conversation_id=conversation.id, include=["file_search_call.results"]
    )
    assert one.results[0].score == 0.5
    with api_error(openai.BadRequestError, 400, param="include"):
        client.conversations.items.list(conversation.id, include=["everything"])  # type: ignore[list-item]


def test_bad_input_names_the_param(client):
    with api_error(openai.NotFoundError, 404, param="conversation_id", message="conv_missing"):
        client.conversations.retrieve("conv_missing")
    with api_error(openai.NotFoundError, 404, param="conversation_id"):
        client.conversations.items.create("conv_missing", items=[{"role": "user", "content": "x"}])
    with api_error(openai.NotFoundError, 404, param="conversation_id"):
        client.conversations.update("conv_missing", metadata={})
    with api_error(openai.BadRequestError, 400, param="items[1].type", message="'web_page'"):
        client.conversations.create(
            items=[{"role": "user", "content": "ok"}, {"type": "web_page", "url": "x"}]  # type: ignore[list-item]
        )
    with api_error(openai.BadRequestError, 400, param="items[0].content[0].text"):
        client.conversations.create(items=[{"role": "user", "content": [{"type": "input_text", "text": 5}]}])  # type: ignore[list-item]
    with api_error(openai.BadRequestError, 400, param="items"):
        client.conversations.create(items=[{"role": "user", "content": str(i)} for i in range(21)])
    with api_error(openai.BadRequestError, 400, param="items[0].content[0].file_id", message="file-nope"):
        client.conversations.create(
            items=[{"role": "user", "content": [{"type": "input_file", "file_id": "file-nope"}]}]
        )
    with api_error(openai.BadRequestError, 400, param="metadata"):
        client.conversations.create(metadata={str(i): "x" for i in range(17)})
    conversation = client.conversations.create()
    with api_error(openai.BadRequestError, 400, param="items"):
        client.conversations.items.create(conversation.id, items=[])
    with api_error(openai.BadRequestError, 400, param="items[1].id"):
        client.conversations.items.create(
            conversation.id,
            items=[
                {"role": "user", "content": "a", "id": "m1"},
                {"role": "user", "content": "b", "id": "m1"},
            ],
        )
    with api_error(openai.BadRequestError, 400, param="metadata"):
        client.post(f"/conversations/{conversation.id}", body={}, cast_to=Conversation)
    with api_error(openai.BadRequestError, 400, param="items[0].content"):
        client.post(
            "/conversations", body={"items": [{"role": "user", "content": "a\u0000b"}]}, cast_to=Conversation
        )
    # nothing half-written: the refused requests left no conversation behind and no item
    assert [i.id for i in client.conversations.items.list(conversation.id).data] == []


def test_projects_are_isolated(client, client_b):
    conversation, ids = conversation_with(client, 1)
    with api_error(openai.NotFoundError, 404, param="conversation_id"):
        client_b.conversations.retrieve(conversation.id)
    with api_error(openai.NotFoundError, 404, param="conversation_id"):
        client_b.conversations.items.list(conversation.id)
    with api_error(openai.NotFoundError, 404, param="conversation_id"):
        client_b.conversations.items.retrieve(ids[0], conversation_id=conversation.id)
    with api_error(openai.NotFoundError, 404, param="conversation_id"):
        client_b.conversations.delete(conversation.id)
    other = client_b.conversations.create()
    with api_error(openai.BadRequestError, 400, param="items[0].id"):  # references stay inside a project
        client_b.conversations.items.create(other.id, items=[{"type": "item_reference", "id": ids[0]}])
    assert client.conversations.retrieve(conversation.id).id == conversation.id


async def test_async_client(aclient):
    conversation = await aclient.conversations.create(items=[{"role": "user", "content": "async"}])
    items = await aclient.conversations.items.list(conversation.id)
    assert [item.content[0].text for item in items.data] == ["async"]
    assert (await aclient.conversations.delete(conversation.id)).deleted is True


def make_thread(client):
    image = upload(client, png_bytes(), name="pic.png", purpose="vision")
    doc = upload(client)
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi, how can I help?"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_file", "image_file": {"file_id": image.id, "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
                "attachments": [{"file_id": doc.id, "tools": [{"type": "code_interpreter"}]}],
            },
        ],
        metadata={"from": "assistants"},
    )
    return thread, image


def test_thread_becomes_a_conversation(client, client_b):
    thread, image = make_thread(client)
    conversation = client.post(f"/threads/{thread.id}/conversation", cast_to=Conversation)
    assert conversation.id.startswith("conv_") and conversation.metadata == {"from": "assistants"}
    items = client.conversations.items.list(conversation.id, order="asc")
    for item in raw_json(client.conversations.items.with_raw_response.list(conversation.id))["data"]:
        item_shape(item)
    assert [item.role for item in items.data] == ["user", "assistant", "user"]
    hello, reply, look = items.data
    assert hello.content[0].type == "input_text" and hello.content[0].text == "Hello"
    assert reply.content[0].type == "output_text" and reply.content[0].text == "Hi, how can I help?"
    assert [p.type for p in look.content] == ["input_text", "input_image", "input_image"]
    assert look.content[1].file_id == image.id and look.content[1].detail == "low"
    assert look.content[2].image_url == "https://example.com/a.png" and look.content[2].detail == "auto"
    # the thread is untouched; metadata from the body wins
    assert len(client.beta.threads.messages.list(thread.id).data) == 3
    named = client.post(
        f"/threads/{thread.id}/conversation", body={"metadata": {"a": "b"}}, cast_to=Conversation
    )
    assert named.metadata == {"a": "b"} and named.id != conversation.id
    with api_error(openai.NotFoundError, 404, param="thread_id", message="thread_missing"):
        client.post("/threads/thread_missing/conversation", cast_to=Conversation)
    with api_error(openai.NotFoundError, 404, param="thread_id"):
        client_b.post(f"/threads/{thread.id}/conversation", cast_to=Conversation)
    with api_error(openai.BadRequestError, 400, param="metadata"):
        client.post(f"/threads/{thread.id}/conversation", body={"metadata": "x"}, cast_to=Conversation)


def from_thread(server, *args: str, keys: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASSISTD_DATA_DIR": str(server.data_dir), "ASSISTD_API_KEYS": keys}
    cmd = [sys.executable, "-m", "assistd", "conversations", "from-thread", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=server.data_dir)


def test_cli_copies_a_thread(server, client):
    thread, _ = make_thread(client)
    keys = f"{KEY_A}=project-a,{KEY_B}=project-b"
    done = from_thread(server, thread.id, "--project", "project-a", keys=keys)
    assert done.returncode == 0, done.stderr
    conversation_id = done.stdout.strip()
    assert conversation_id.startswith("conv_")
    assert "attachment" in done.stderr and "code_interpreter" in done.stderr  # said, not silently dropped
    items = client.conversations.items.list(conversation_id, order="asc").data
    assert [item.role for item in items] == ["user", "assistant", "user"]
    assert client.conversations.retrieve(conversation_id).metadata == {"from": "assistants"}

    two_projects = from_thread(server, thread.id, keys=keys)
    assert two_projects.returncode == 2 and "--project" in two_projects.stderr
    one_project = from_thread(server, thread.id, keys=f"{KEY_A}=project-a")
    assert one_project.returncode == 0, one_project.stderr
    wrong = from_thread(server, thread.id, "--project", "project-b", keys=keys)
    assert wrong.returncode == 1 and f"No thread found with id '{thread.id}'" in wrong.stderr
