"""ConversationService on a real temporary SQLite file: what the Responses code calls inside its own
transaction (require, append, items_in_order), concurrent appends, and a thread's messages as items."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from openai.types.conversations import ConversationItem
from pydantic import TypeAdapter
from sqlmodel import select

from assistd.errors import ActiveRunConflict, NotFound
from assistd.protocol.conversations import ConversationCreate, ThreadToConversation
from assistd.protocol.items import message_item, output_text_part, parse_items
from assistd.protocol.threads import ThreadCreate
from assistd.services.conversations import ConversationService
from assistd.services.messages import MessageService
from assistd.services.threads import ThreadService
from assistd.services.tool_resources import ToolResourceResolver
from assistd.storage.conversations import ConversationItemRow, ConversationRow
from assistd.storage.db import Database
from assistd.storage.files import FileRow
from assistd.storage.messages import MessageRow

ITEM = TypeAdapter(ConversationItem)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path}/x.db")
    database.create_schema()
    yield database
    database.dispose()


@pytest.fixture
def service(db: Database) -> ConversationService:
    return ConversationService(db)


def test_append_in_the_callers_transaction_skips_items_already_there(db, service):
    conversation = service.create(
        "p", ConversationCreate.parse({"items": [{"role": "user", "content": "hi"}]})
    )
    reply = message_item("assistant", "hello")
    with db.session() as s:
        service.append(s, "p", conversation.id, [reply, message_item("user", "more")])
    with db.session() as s:
        service.append(s, "p", conversation.id, [reply])  # a retried response repeats nothing
        items = service.items_in_order(s, "p", conversation.id)
    assert [i["content"][0]["text"] for i in items] == ["hi", "hello", "more"]
    assert items[1] == reply
    for item in items:
        ITEM.validate_python(item)
    with db.session() as s:
        assert s.get(ConversationRow, conversation.id).item_seq == 4  # the counter moves past skipped ones
        seqs = list(s.exec(select(ConversationItemRow.seq).order_by(ConversationItemRow.seq)))
    assert seqs == [1, 2, 3]


def test_append_rolls_back_with_the_caller(db, service):
    conversation = service.create("p", ConversationCreate.parse({}))
    with pytest.raises(RuntimeError), db.session() as s:
        service.append(s, "p", conversation.id, [message_item("user", "lost")])
        raise RuntimeError("the response failed")
    with db.session() as s:
        assert service.items_in_order(s, "p", conversation.id) == []
        assert s.get(ConversationRow, conversation.id).item_seq == 0


def test_require_names_the_param_and_keeps_projects_apart(db, service):
    conversation = service.create("p", ConversationCreate.parse({}))
    with db.session() as s:
        assert service.require(s, "p", conversation.id).id == conversation.id
        for project, conversation_id in (("other", conversation.id), ("p", "conv_missing")):
            with pytest.raises(NotFound) as info:
                service.require(s, project, conversation_id)
            assert info.value.param == "conversation" and conversation_id in info.value.message
            with pytest.raises(NotFound):
                service.items_in_order(s, project, conversation_id)
            with pytest.raises(NotFound):
                service.append(s, project, conversation_id, [message_item("user", "x")])
    with pytest.raises(ValueError), db.session() as s:
        service.append(s, "p", conversation.id, parse_items([{"id": "msg_1"}], "input"))


def test_concurrent_appends_keep_one_order(db, service):
    conversation = service.create("p", ConversationCreate.parse({}))
    errors = []

    def add(worker: int) -> None:
        try:
            for n in range(5):
                with db.session() as s:
                    items = [message_item("user", f"{worker}-{n}-{k}") for k in range(2)]
                    service.append(s, "p", conversation.id, items)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=add, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    with db.session() as s:
        texts = [i["content"][0]["text"] for i in service.items_in_order(s, "p", conversation.id)]
    assert len(texts) == 40
    for w in range(4):  # each worker's items in its own order, each pair together
        mine = [t for t in texts if t.startswith(f"{w}-")]
        assert mine == [f"{w}-{n}-{k}" for n in range(5) for k in range(2)]
    for i in range(0, 40, 2):
        assert texts[i].rsplit("-", 1)[0] == texts[i + 1].rsplit("-", 1)[0]


def test_thread_messages_become_items_with_their_annotations(db, service):
    resources = ToolResourceResolver()
    messages = MessageService(db, resources)
    threads = ThreadService(db, resources, messages)
    thread = threads.create("p", ThreadCreate.parse({"messages": [{"role": "user", "content": "Find it"}]}))
    text = "Vacation is 25 days【4:0†source】. Chart: sandbox:/mnt/data/c.png"
    annotations = [
        {
            "type": "file_citation",
            "text": "【4:0†source】",
            "start_index": 18,
            "end_index": 31,
            "file_citation": {"file_id": "file-hb"},
        },
        {
            "type": "file_path",
            "text": "sandbox:/mnt/data/c.png",
            "start_index": 40,
            "end_index": 63,
            "file_path": {"file_id": "file-c"},
        },
    ]
    with db.session() as s:
        s.add(
            FileRow(
                id="file-hb",
                project="p",
                created_at=1,
                bytes=1,
                filename="handbook.pdf",
                purpose="assistants",
            )
        )
        s.add(
            MessageRow(
                id="msg_zzzzzzzzzzzzzzzzzzzzzzzzzzzz",
                project="p",
                thread_id=thread.id,
                created_at=2**40,
                role="assistant",
                content=[
                    {"type": "text", "text": {"value": text, "annotations": annotations}},
                    {"type": "image_file", "image_file": {"file_id": "file-img"}},
                ],
                status="incomplete",
            )
        )
    copy = service.from_thread("p", thread.id, ThreadToConversation.parse({}))
    with db.session() as s:
        items = service.items_in_order(s, "p", copy.conversation.id)
    assert [i["role"] for i in items] == ["user", "assistant"]
    reply = items[1]
    assert reply["status"] == "incomplete"
    assert reply["content"] == [
        output_text_part(
            text,
            [
                {"type": "file_citation", "file_id": "file-hb", "filename": "handbook.pdf", "index": 18},
                {"type": "file_path", "file_id": "file-c", "index": 40},
            ],
        )
    ]
    for item in items:
        ITEM.validate_python(item)
    assert any("image_file" in note for note in copy.notes)

    service.active_run = lambda _s, thread_id: "run_busy"
    with pytest.raises(ActiveRunConflict) as info:
        service.from_thread("p", thread.id, ThreadToConversation.parse({}))
    assert info.value.param == "thread_id"
