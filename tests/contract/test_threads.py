"""Threads: create (initial messages, metadata, tool_resources), retrieve, update, delete."""

from __future__ import annotations

import openai
from openai.types.beta import Thread, ThreadDeleted
from openai.types.beta.threads import Message

from tests.contract.helpers import api_error, shaped, shaped_list, upload
from tests.support import png_bytes


def test_create_with_messages_metadata_and_resources(client):
    file = upload(client)
    image = upload(client, png_bytes(), name="pic.png", purpose="vision")
    thread = shaped(
        client.beta.threads.with_raw_response.create(
            messages=[
                {"role": "user", "content": "Hello", "metadata": {"i": "0"}},
                {"role": "assistant", "content": [{"type": "text", "text": "Hi there"}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Look"},
                        {"type": "image_file", "image_file": {"file_id": image.id, "detail": "low"}},
                    ],
                    "attachments": [{"file_id": file.id, "tools": [{"type": "code_interpreter"}]}],
                },
            ],
            metadata={"topic": "greeting"},
            tool_resources={"code_interpreter": {"file_ids": [file.id]}},
        ),
        Thread,
    )
    assert thread.id.startswith("thread_") and thread.object == "thread"
    assert thread.metadata == {"topic": "greeting"}
    assert thread.tool_resources.code_interpreter.file_ids == [file.id]

    page = shaped_list(client.beta.threads.messages.with_raw_response.list(thread.id, order="asc"), Message)
    assert [m.role for m in page.data] == ["user", "assistant", "user"]
    assert page.data[0].content[0].text.value == "Hello" and page.data[0].metadata == {"i": "0"}
    assert page.data[1].content[0].text.value == "Hi there"
    last = page.data[2]
    assert last.content[1].type == "image_file" and last.content[1].image_file.file_id == image.id
    assert last.attachments[0].file_id == file.id
    assert all(m.thread_id == thread.id and m.run_id is None for m in page.data)

    again = shaped(client.beta.threads.with_raw_response.retrieve(thread.id), Thread)
    assert again == thread


def test_create_empty(client):
    thread = shaped(client.beta.threads.with_raw_response.create(), Thread)
    assert thread.metadata == {}
    assert client.beta.threads.messages.list(thread.id).data == []


def test_update_metadata_and_resources(client):
    file = upload(client)
    thread = client.beta.threads.create(metadata={"a": "1"})
    updated = shaped(client.beta.threads.with_raw_response.update(thread.id, metadata={"b": "2"}), Thread)
    assert updated.metadata == {"b": "2"}
    with_resources = shaped(
        client.beta.threads.with_raw_response.update(
            thread.id, tool_resources={"code_interpreter": {"file_ids": [file.id]}}
        ),
        Thread,
    )
    assert with_resources.metadata == {"b": "2"}  # omitted: unchanged
    assert with_resources.tool_resources.code_interpreter.file_ids == [file.id]
    assert client.beta.threads.retrieve(thread.id) == with_resources


def test_delete_removes_messages(client):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "bye"}])
    message = client.beta.threads.messages.list(thread.id).data[0]
    deleted = shaped(client.beta.threads.with_raw_response.delete(thread.id), ThreadDeleted)
    assert (deleted.id, deleted.object, deleted.deleted) == (thread.id, "thread.deleted", True)
    with api_error(openai.NotFoundError, 404, message=f"No thread found with id '{thread.id}'."):
        client.beta.threads.retrieve(thread.id)
    with api_error(openai.NotFoundError, 404):
        client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    with api_error(openai.NotFoundError, 404):
        client.beta.threads.messages.list(thread.id)
    with api_error(openai.NotFoundError, 404):
        client.beta.threads.delete(thread.id)
    with api_error(openai.NotFoundError, 404):
        client.beta.threads.update(thread.id, metadata={})


def test_bad_initial_message_creates_nothing(client):
    with api_error(openai.BadRequestError, 400, param="messages[1].role"):
        client.beta.threads.create(
            messages=[{"role": "user", "content": "ok"}, {"role": "system", "content": "not allowed"}]
        )
    with api_error(openai.BadRequestError, 400, param="messages[0].attachments[0].file_id"):
        client.beta.threads.create(
            messages=[
                {"role": "user", "content": "x", "attachments": [{"file_id": "file-nope", "tools": []}]}
            ]
        )


async def test_async_thread_lifecycle(aclient):
    thread = shaped(
        await aclient.beta.threads.with_raw_response.create(messages=[{"role": "user", "content": "hi"}]),
        Thread,
    )
    assert shaped(await aclient.beta.threads.with_raw_response.retrieve(thread.id), Thread) == thread
    updated = shaped(
        await aclient.beta.threads.with_raw_response.update(thread.id, metadata={"x": "y"}), Thread
    )
    assert updated.metadata == {"x": "y"}
    deleted = shaped(await aclient.beta.threads.with_raw_response.delete(thread.id), ThreadDeleted)
    assert deleted.deleted
    with api_error(openai.NotFoundError, 404):
        await aclient.beta.threads.retrieve(thread.id)
