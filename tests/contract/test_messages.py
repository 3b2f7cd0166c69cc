"""Messages: create (string, content parts, image_file, attachments), list, retrieve, update, delete."""

from __future__ import annotations

import openai
from openai.types.beta.threads import Message, MessageDeleted

from tests.contract.helpers import api_error, shaped, shaped_list, upload
from tests.support import png_bytes


def test_create_string_and_parts(client):
    thread = client.beta.threads.create()
    text = shaped(
        client.beta.threads.messages.with_raw_response.create(thread.id, role="user", content="plain"),
        Message,
    )
    assert text.object == "thread.message" and text.id.startswith("msg_") and text.thread_id == thread.id
    assert text.status == "completed" and text.role == "user"
    assert text.content[0].type == "text"
    assert text.content[0].text.value == "plain" and text.content[0].text.annotations == []
    assert text.assistant_id is None and text.run_id is None
    assert text.incomplete_details is None and text.incomplete_at is None
    assert text.metadata == {} and not text.attachments

    image = upload(client, png_bytes(), name="cat.png", purpose="vision")
    doc = upload(client, b"a,b\n1,2\n", name="data.csv")
    parts = shaped(
        client.beta.threads.messages.with_raw_response.create(
            thread.id,
            role="user",
            content=[
                {"type": "text", "text": "What is in these?"},
                {"type": "image_file", "image_file": {"file_id": image.id, "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ],
            attachments=[
                {"file_id": doc.id, "tools": [{"type": "code_interpreter"}]},
                {"file_id": image.id, "tools": [{"type": "file_search"}, {"type": "code_interpreter"}]},
            ],
            metadata={"source": "test"},
        ),
        Message,
    )
    assert [p.type for p in parts.content] == ["text", "image_file", "image_url"]
    assert parts.content[1].image_file.file_id == image.id and parts.content[1].image_file.detail == "high"
    assert parts.content[2].image_url.url == "https://example.com/cat.png"
    assert [a.file_id for a in parts.attachments] == [doc.id, image.id]
    assert [t.type for t in parts.attachments[1].tools] == ["file_search", "code_interpreter"]
    assert parts.metadata == {"source": "test"}

    assistant_msg = client.beta.threads.messages.create(thread.id, role="assistant", content="I answer")
    assert assistant_msg.role == "assistant"

    fetched = shaped(
        client.beta.threads.messages.with_raw_response.retrieve(parts.id, thread_id=thread.id), Message
    )
    assert fetched == parts


def test_list_order_cursors_and_run_filter(client):
    thread = client.beta.threads.create()
    made = [client.beta.threads.messages.create(thread.id, role="user", content=f"m{i}") for i in range(6)]
    ids = [m.id for m in made]
    desc = shaped_list(client.beta.threads.messages.with_raw_response.list(thread.id), Message)
    assert [m.id for m in desc.data] == ids[::-1] and not desc.has_more
    asc = shaped_list(
        client.beta.threads.messages.with_raw_response.list(thread.id, order="asc", limit=4), Message
    )
    assert [m.id for m in asc.data] == ids[:4] and asc.has_more
    after = client.beta.threads.messages.list(thread.id, order="asc", after=ids[3])
    assert [m.id for m in after.data] == ids[4:] and not after.has_more
    before = client.beta.threads.messages.list(thread.id, order="asc", before=ids[3], limit=2)
    assert [m.id for m in before.data] == ids[1:3] and before.has_more
    before_desc = client.beta.threads.messages.list(thread.id, order="desc", before=ids[2])
    assert [m.id for m in before_desc.data] == ids[3:][::-1]
    window = client.beta.threads.messages.list(thread.id, order="asc", after=ids[0], before=ids[4])
    assert [m.id for m in window.data] == ids[1:4]
    assert [m.id for m in client.beta.threads.messages.list(thread.id, limit=2)] == ids[::-1]  # auto-paging
    none = shaped_list(
        client.beta.threads.messages.with_raw_response.list(thread.id, run_id="run_nope"), Message
    )
    assert none.data == [] and none.first_id is None and not none.has_more


def test_update_metadata_and_delete(client):
    thread = client.beta.threads.create()
    message = client.beta.threads.messages.create(thread.id, role="user", content="x", metadata={"a": "1"})
    updated = shaped(
        client.beta.threads.messages.with_raw_response.update(
            message.id, thread_id=thread.id, metadata={"b": "2"}
        ),
        Message,
    )
    assert updated.metadata == {"b": "2"} and updated.content == message.content
    unchanged = client.beta.threads.messages.update(message.id, thread_id=thread.id)
    assert unchanged.metadata == {"b": "2"}

    deleted = shaped(
        client.beta.threads.messages.with_raw_response.delete(message.id, thread_id=thread.id), MessageDeleted
    )
    assert (deleted.id, deleted.object, deleted.deleted) == (message.id, "thread.message.deleted", True)
    with api_error(openai.NotFoundError, 404, message=f"No message found with id '{message.id}'."):
        client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    with api_error(openai.NotFoundError, 404):
        client.beta.threads.messages.delete(message.id, thread_id=thread.id)
    with api_error(openai.NotFoundError, 404):
        client.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={})
    assert client.beta.threads.messages.list(thread.id).data == []


def test_message_of_another_thread_is_404(client):
    one, two = client.beta.threads.create(), client.beta.threads.create()
    message = client.beta.threads.messages.create(one.id, role="user", content="mine")
    with api_error(openai.NotFoundError, 404, message=f"No message found with id '{message.id}'."):
        client.beta.threads.messages.retrieve(message.id, thread_id=two.id)
    with api_error(openai.NotFoundError, 404, message="No thread found with id 'thread_nope'."):
        client.beta.threads.messages.create("thread_nope", role="user", content="x")


def test_message_validation(client):
    thread = client.beta.threads.create()
    with api_error(openai.BadRequestError, 400, param="content"):
        client.beta.threads.messages.create(thread.id, role="user", content=[])
    with api_error(openai.BadRequestError, 400, param="role"):
        client.beta.threads.messages.create(thread.id, role="system", content="x")
    with api_error(openai.BadRequestError, 400, param="content[1].image_file.file_id"):
        client.beta.threads.messages.create(
            thread.id,
            role="user",
            content=[
                {"type": "text", "text": "x"},
                {"type": "image_file", "image_file": {"file_id": "file-nope"}},
            ],
        )
    with api_error(openai.BadRequestError, 400, param="content[0].type"):
        client.beta.threads.messages.create(thread.id, role="user", content=[{"type": "video", "video": {}}])
    with api_error(openai.BadRequestError, 400, param="attachments[0].tools[0].type"):
        client.beta.threads.messages.create(
            thread.id,
            role="user",
            content="x",
            attachments=[{"file_id": "file-x", "tools": [{"type": "web"}]}],
        )
    with api_error(openai.BadRequestError, 400, param="content"):
        client.beta.threads.messages.create(thread.id, role="user", content=None)
    assert client.beta.threads.messages.list(thread.id).data == []


async def test_async_messages(aclient):
    thread = await aclient.beta.threads.create()
    message = shaped(
        await aclient.beta.threads.messages.with_raw_response.create(thread.id, role="user", content="async"),
        Message,
    )
    page = shaped_list(await aclient.beta.threads.messages.with_raw_response.list(thread.id), Message)
    assert [m.id for m in page.data] == [message.id]
    got = shaped(
        await aclient.beta.threads.messages.with_raw_response.retrieve(message.id, thread_id=thread.id),
        Message,
    )
    assert got == message
    updated = shaped(
        await aclient.beta.threads.messages.with_raw_response.update(
            message.id, thread_id=thread.id, metadata={"k": "v"}
        ),
        Message,
    )
    assert updated.metadata == {"k": "v"}
    deleted = shaped(
        await aclient.beta.threads.messages.with_raw_response.delete(message.id, thread_id=thread.id),
        MessageDeleted,
    )
    assert deleted.deleted


async def test_concurrent_creates(aclient):
    """Many writers at once (the handlers run in a thread pool): none fails, the list holds each once."""
    import asyncio

    thread = await aclient.beta.threads.create()
    made = await asyncio.gather(
        *(aclient.beta.threads.messages.create(thread.id, role="user", content=f"c{i}") for i in range(30))
    )
    listed = [m.id async for m in aclient.beta.threads.messages.list(thread.id, order="asc", limit=7)]
    assert sorted(listed) == listed and set(listed) == {m.id for m in made}
