"""The issue-2 services on a real temporary SQLite file: pagination, partial updates, cascades, rollback."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
from sqlmodel import select

from assistd import ids
from assistd.config import ModelEntry
from assistd.errors import InvalidRequest, NotFound
from assistd.llm.catalog import ModelCatalog
from assistd.protocol.assistants import AssistantCreate, AssistantUpdate
from assistd.protocol.common import PageQuery
from assistd.protocol.messages import MessageCreate, MessageUpdate
from assistd.protocol.threads import ThreadCreate, ThreadUpdate
from assistd.services.assistants import AssistantService
from assistd.services.files import FileService
from assistd.services.messages import MessageService
from assistd.services.threads import ThreadService
from assistd.services.tool_resources import ToolResourceResolver
from assistd.storage.assistants import AssistantRow
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database
from assistd.storage.files import FileRow
from assistd.storage.messages import MessageRow
from assistd.storage.threads import ThreadRow

MODEL = "tiny"


class Services:
    def __init__(self, tmp: Path) -> None:
        self.db = Database(f"sqlite:///{tmp}/x.db")
        self.db.create_schema()
        self.blobs = BlobStore(tmp / "files")
        resources = ToolResourceResolver()
        catalog = ModelCatalog([ModelEntry(name=MODEL, path=tmp / "tiny.gguf")], MODEL, created=0)
        self.assistants = AssistantService(self.db, catalog, resources)
        self.messages = MessageService(self.db, resources)
        self.threads = ThreadService(self.db, resources, self.messages)
        self.files = FileService(self.db, self.blobs, max_bytes=100)

    def count(self, table, *where) -> int:
        with self.db.session() as s:
            return len(list(s.exec(select(table).where(*where))))


@pytest.fixture
def svc(tmp_path):
    services = Services(tmp_path)
    yield services
    services.db.dispose()


@pytest.fixture
def frozen_clock(monkeypatch):
    """Every id is made in the same millisecond: only the id's sequence part orders them."""
    monkeypatch.setattr(ids.time, "time", lambda: 1_700_000_000.5)


def page(**kwargs) -> PageQuery:
    return PageQuery.from_query(**kwargs)


def walk(list_fn, **kwargs) -> list[str]:
    """Pages as the SDK does: re-query with after=<last id> until has_more is false."""
    seen, after = [], None
    while True:
        result = list_fn(page(after=after, **kwargs))
        seen += [item.id for item in result.data]
        if not result.has_more:
            return seen
        after = result.data[-1].id


def test_same_second_pagination(svc, frozen_clock):
    made = [
        svc.assistants.create("p", AssistantCreate.parse({"model": MODEL, "name": f"{i}"})).id
        for i in range(25)
    ]
    assert len({svc.assistants.get("p", i).created_at for i in made}) == 1
    assert made == sorted(made)
    listed = lambda q: svc.assistants.list("p", q)  # noqa: E731
    assert walk(listed, limit="4") == made[::-1]
    assert walk(listed, limit="7", order="asc") == made
    before = svc.assistants.list("p", page(before=made[10], order="asc", limit="3"))
    assert [a.id for a in before.data] == made[7:10] and before.has_more
    window = svc.assistants.list("p", page(after=made[2], before=made[6], order="asc"))
    assert [a.id for a in window.data] == made[3:6] and not window.has_more
    desc = svc.assistants.list("p", page(after=made[20], limit="100"))
    assert [a.id for a in desc.data] == made[:20][::-1]
    assert svc.assistants.list("other", page()).data == []


def test_pagination_of_foreign_rows_ordered_by_created_then_id(svc):
    """Rows whose ids do not encode time (imported, say) still page by (created_at, id)."""
    with svc.db.session() as s:
        for i, created in enumerate([5, 3, 5, 1, 3]):
            s.add(AssistantRow(id=f"asst_legacy{i}", project="p", created_at=created, model=MODEL))
    order = ["asst_legacy3", "asst_legacy1", "asst_legacy4", "asst_legacy0", "asst_legacy2"]
    listed = lambda q: svc.assistants.list("p", q)  # noqa: E731
    assert walk(listed, limit="2", order="asc") == order
    assert walk(listed, limit="2") == order[::-1]
    with pytest.raises(InvalidRequest) as info:
        svc.assistants.list("p", page(after="asst_unknown"))
    assert info.value.param == "after"


def test_page_query_limits():
    assert (page().limit, page().order) == (20, "desc")
    for bad in ("0", "101", "x", "-3"):
        with pytest.raises(InvalidRequest) as info:
            page(limit=bad)
        assert info.value.param == "limit"
    with pytest.raises(InvalidRequest) as info:
        page(order="sideways")
    assert info.value.param == "order"


def test_assistant_partial_update(svc):
    created = svc.assistants.create(
        "p",
        AssistantCreate.parse(
            {
                "model": MODEL,
                "name": "n",
                "description": "d",
                "instructions": "i",
                "metadata": {"k": "v"},
                "temperature": 0.5,
                "top_p": 0.7,
                "tools": [{"type": "code_interpreter"}],
                "response_format": {"type": "json_object"},
            }
        ),
    )
    same = svc.assistants.update("p", created.id, AssistantUpdate.parse({}))
    assert same == created
    renamed = svc.assistants.update("p", created.id, AssistantUpdate.parse({"name": "m"}))
    assert renamed.model_dump() == {**created.model_dump(), "name": "m"}
    cleared = svc.assistants.update(
        "p",
        created.id,
        AssistantUpdate.parse(
            {
                "description": None,
                "temperature": None,
                "metadata": None,
                "tools": None,
                "response_format": None,
            }
        ),
    )
    assert cleared.description is None and cleared.temperature is None
    assert cleared.metadata == {} and cleared.tools == [] and cleared.response_format == "auto"
    assert (cleared.name, cleared.instructions, cleared.top_p, cleared.model) == ("m", "i", 0.7, MODEL)
    kept_model = svc.assistants.update("p", created.id, AssistantUpdate.parse({"model": None}))
    assert kept_model.model == MODEL
    with pytest.raises(InvalidRequest) as info:
        svc.assistants.update("p", created.id, AssistantUpdate.parse({"model": "missing"}))
    assert info.value.param == "model"
    with pytest.raises(NotFound):
        svc.assistants.update("q", created.id, AssistantUpdate.parse({"name": "x"}))
    assert svc.assistants.get("p", created.id) == kept_model


def test_thread_partial_update(svc):
    file = svc.files.upload("p", "a.txt", "assistants", io.BytesIO(b"abc"))
    thread = svc.threads.create(
        "p",
        ThreadCreate.parse(
            {"metadata": {"a": "1"}, "tool_resources": {"code_interpreter": {"file_ids": [file.id]}}}
        ),
    )
    kept = svc.threads.update("p", thread.id, ThreadUpdate.parse({"metadata": {"b": "2"}}))
    assert kept.metadata == {"b": "2"} and kept.tool_resources == {
        "code_interpreter": {"file_ids": [file.id]}
    }
    cleared = svc.threads.update(
        "p", thread.id, ThreadUpdate.parse({"metadata": None, "tool_resources": None})
    )
    assert cleared.metadata == {} and cleared.tool_resources == {}


def test_thread_delete_cascades_messages(svc):
    thread = svc.threads.create("p", ThreadCreate.parse({"messages": [{"role": "user", "content": "a"}] * 3}))
    other = svc.threads.create("p", ThreadCreate.parse({"messages": [{"role": "user", "content": "b"}]}))
    assert svc.count(MessageRow, MessageRow.thread_id == thread.id) == 3
    deleted = svc.threads.delete("p", thread.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (thread.id, "thread.deleted", True)
    assert svc.count(MessageRow, MessageRow.thread_id == thread.id) == 0
    assert svc.count(MessageRow, MessageRow.thread_id == other.id) == 1
    with pytest.raises(NotFound):
        svc.messages.list("p", thread.id, page())


def test_failed_thread_create_leaves_nothing(svc):
    body = {
        "messages": [
            {"role": "user", "content": "fine"},
            {"role": "user", "content": [{"type": "image_file", "image_file": {"file_id": "file-missing"}}]},
        ]
    }
    with pytest.raises(InvalidRequest) as info:
        svc.threads.create("p", ThreadCreate.parse(body))
    assert info.value.param == "messages[1].content[0].image_file.file_id"
    assert svc.count(ThreadRow) == 0 and svc.count(MessageRow) == 0


def test_failed_message_create_leaves_nothing(svc):
    thread = svc.threads.create("p", ThreadCreate.parse({}))
    bad = MessageCreate.parse(
        {
            "role": "user",
            "content": "x",
            "attachments": [{"file_id": "file-missing", "tools": [{"type": "file_search"}]}],
        }
    )
    with pytest.raises(InvalidRequest) as info:
        svc.messages.create("p", thread.id, bad)
    assert info.value.param == "attachments[0].file_id"
    assert svc.count(MessageRow) == 0


def test_attachment_hook_failure_rolls_back(svc):
    file = svc.files.upload("p", "a.txt", "assistants", io.BytesIO(b"abc"))
    thread = svc.threads.create("p", ThreadCreate.parse({}))

    def failing_hook(session, thread_row, message_row):
        raise InvalidRequest("cannot index", param="attachments")

    svc.messages.attachment_hooks.append(failing_hook)
    body = {
        "role": "user",
        "content": "x",
        "attachments": [{"file_id": file.id, "tools": [{"type": "file_search"}]}],
    }
    with pytest.raises(InvalidRequest):
        svc.messages.create("p", thread.id, MessageCreate.parse(body))
    assert svc.count(MessageRow) == 0


def test_messages_run_filter_and_order(svc, frozen_clock):
    thread = svc.threads.create("p", ThreadCreate.parse({}))
    made = [
        svc.messages.create("p", thread.id, MessageCreate.parse({"role": "user", "content": str(i)}))
        for i in range(5)
    ]
    with svc.db.session() as s:  # as the run engine would write them
        for row in s.exec(select(MessageRow).where(MessageRow.id.in_([made[1].id, made[3].id]))):  # type: ignore[attr-defined]
            row.run_id = "run_1"
            s.add(row)
    by_run = svc.messages.list("p", thread.id, page(order="asc"), run_id="run_1")
    assert [m.id for m in by_run.data] == [made[1].id, made[3].id]
    assert svc.messages.list("p", thread.id, page(), run_id="run_2").data == []
    assert walk(lambda q: svc.messages.list("p", thread.id, q), limit="2") == [m.id for m in made[::-1]]


def test_message_update_and_delete(svc):
    thread = svc.threads.create("p", ThreadCreate.parse({}))
    message = svc.messages.create("p", thread.id, MessageCreate.parse({"role": "user", "content": "x"}))
    assert svc.messages.update("p", thread.id, message.id, MessageUpdate.parse({})).metadata == {}
    updated = svc.messages.update("p", thread.id, message.id, MessageUpdate.parse({"metadata": {"a": "b"}}))
    assert updated.metadata == {"a": "b"} and updated.content == message.content
    with pytest.raises(NotFound):
        svc.messages.get("q", thread.id, message.id)
    svc.messages.delete("p", thread.id, message.id)
    with pytest.raises(NotFound):
        svc.messages.get("p", thread.id, message.id)


class WatchedSource(io.BytesIO):
    """A body that records, at each read, whether the blob exists under its final name or as .part."""

    def __init__(self, data: bytes, store: BlobStore, file_id_box: list[str]) -> None:
        super().__init__(data)
        self.store, self.box, self.states = store, file_id_box, []

    def read(self, size: int = -1) -> bytes:
        target = next(self.store.root.rglob("file-*"), None)
        self.states.append(target.name.endswith(".part") if target else None)
        return super().read(min(size, 7) if size and size > 0 else 7)


def test_blob_written_to_part_then_renamed(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    source = WatchedSource(b"x" * 30, store, [])
    size, digest = store.write("file-abc123", source, limit=100)
    assert size == 30 and len(digest) == 64
    assert source.states[0] is True and all(
        state is True for state in source.states
    )  # only .part while writing
    assert store.path("file-abc123").read_bytes() == b"x" * 30
    assert [p.name for p in store.root.rglob("*") if p.is_file()] == ["file-abc123"]


def test_blob_too_large_keeps_nothing(tmp_path):
    store = BlobStore(tmp_path / "blobs")

    class Stream(io.RawIOBase):  # not seekable: the size is only known while copying
        chunks = itertools.repeat(b"y" * 40, 5)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return next(self.chunks, b"")

    with pytest.raises(Exception) as info:
        store.write("file-big", Stream(), limit=100)
    assert type(info.value).__name__ == "BlobTooLarge"
    assert not [p for p in store.root.rglob("*") if p.is_file()]


def test_file_service_upload_limit_and_delete(svc, tmp_path):
    with pytest.raises(InvalidRequest) as info:
        svc.files.upload("p", "big.bin", "assistants", io.BytesIO(b"z" * 101))
    assert info.value.param == "file"
    assert not [p for p in svc.blobs.root.rglob("*") if p.is_file()]
    file = svc.files.upload("p", "ok.bin", "assistants", io.BytesIO(b"z" * 100))
    path, name = svc.files.content_path("p", file.id)
    assert path.read_bytes() == b"z" * 100 and name == "ok.bin"
    with pytest.raises(NotFound):
        svc.files.content_path("q", file.id)
    with pytest.raises(InvalidRequest) as info:
        svc.files.upload("p", "x", "nonsense", io.BytesIO(b"z"))
    assert info.value.param == "purpose"
    svc.files.delete("p", file.id)
    assert not path.exists()
    with pytest.raises(NotFound):
        svc.files.get("p", file.id)


def test_file_list_purpose_filter(svc, frozen_clock):
    made = [
        svc.files.upload("p", f"{i}.txt", "vision" if i % 2 else "assistants", io.BytesIO(b"a"))
        for i in range(6)
    ]
    files_page = PageQuery.from_query("10000", None, None, None, max_limit=10_000)
    assert [f.id for f in svc.files.list("p", files_page).data] == [f.id for f in made[::-1]]
    vision = svc.files.list("p", files_page, purpose="vision")
    assert [f.id for f in vision.data] == [made[5].id, made[3].id, made[1].id]


def test_expired_files_are_hidden_then_purged(svc):
    old = svc.files.upload("p", "old.txt", "batch", io.BytesIO(b"old"), expires_after_seconds=3600)
    with svc.db.session() as s:  # an hour and a bit later
        row = s.get(FileRow, old.id)
        row.expires_at = ids.now() - 1
        s.add(row)
    with pytest.raises(NotFound):
        svc.files.get("p", old.id)
    with pytest.raises(NotFound):
        svc.files.content_path("p", old.id)
    assert old.id not in [f.id for f in svc.files.list("p", page()).data]
    assert svc.blobs.path(old.id).exists()
    svc.files.upload("p", "new.txt", "assistants", io.BytesIO(b"new"))
    assert not svc.blobs.path(old.id).exists() and svc.count(FileRow, FileRow.id == old.id) == 0
