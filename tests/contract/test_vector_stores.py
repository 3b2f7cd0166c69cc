"""Vector stores through the SDK against the real server: real Chroma, the real embedding model.

upload_and_poll of a mixed batch (PDF, docx, markdown, corrupt PDF), search, filters, static chunking,
detach and File deletion (chunks gone), file content, batch cancel, inline stores on threads, message
attachments, project isolation, and the shape of every object against openai.types."""

from __future__ import annotations

import math
import time

import openai
import pytest
from openai.types import VectorStore, VectorStoreDeleted, VectorStoreSearchResponse
from openai.types.vector_stores import VectorStoreFile, VectorStoreFileBatch, VectorStoreFileDeleted

from tests.contract.helpers import api_error, shaped, shaped_list
from tests.file_search_docs import (
    CORRUPT_PDF,
    MARKDOWN,
    docx_bytes,
    pdf_bytes,
)
from tests.support import raw_json

SEARCH_KEYS = {"object", "search_query", "data", "has_more", "next_page"}


def wait_store(client, store_id: str, timeout: float = 120) -> VectorStore:
    deadline = time.monotonic() + timeout
    while True:
        store = client.vector_stores.retrieve(store_id)
        if store.file_counts.in_progress == 0 or time.monotonic() > deadline:
            return store
        time.sleep(0.25)


def search(client, store_id: str, query, **kwargs) -> dict:
    body = raw_json(client.vector_stores.with_raw_response.search(store_id, query=query, **kwargs))
    assert set(body) == SEARCH_KEYS, body
    assert body["object"] == "vector_store.search_results.page"
    for item in body["data"]:
        VectorStoreSearchResponse.model_validate(item)
        assert set(item) == set(VectorStoreSearchResponse.model_fields), item
        assert 0 <= item["score"] <= 1
    return body


@pytest.fixture(scope="module")
def library(client):
    """One store holding the four-file batch; returns (store, batch, {filename: file id})."""
    store = shaped(client.vector_stores.with_raw_response.create(name="library"), VectorStore)
    files = [
        ("orchard.pdf", pdf_bytes()),
        ("falcon.docx", docx_bytes()),
        ("kitchen.md", MARKDOWN.encode()),
        ("broken.pdf", CORRUPT_PDF),
    ]
    batch = client.vector_stores.file_batches.upload_and_poll(store.id, files=files)
    listed = client.vector_stores.files.list(store.id, limit=100)
    names = {client.files.retrieve(f.id).filename: f.id for f in listed.data}
    return store, batch, names


def test_upload_and_poll_mixed_batch(client, library):
    store, batch, names = library
    assert batch.id.startswith("vsfb_") and batch.vector_store_id == store.id
    assert batch.file_counts.model_dump() == {
        "in_progress": 0,
        "completed": 3,
        "failed": 1,
        "cancelled": 0,
        "total": 4,
    }
    assert batch.status == "completed"
    again = shaped(
        client.vector_stores.file_batches.with_raw_response.retrieve(batch.id, vector_store_id=store.id),
        VectorStoreFileBatch,
    )
    assert again.file_counts == batch.file_counts

    failed = shaped_list(
        client.vector_stores.files.with_raw_response.list(store.id, filter="failed"), VectorStoreFile
    ).data
    assert [f.id for f in failed] == [names["broken.pdf"]]
    assert failed[0].last_error.code == "invalid_file"
    assert "broken.pdf" in failed[0].last_error.message and "PDF" in failed[0].last_error.message
    completed = client.vector_stores.files.list(store.id, filter="completed").data
    assert {f.id for f in completed} == {names["orchard.pdf"], names["falcon.docx"], names["kitchen.md"]}
    for f in completed:
        assert f.last_error is None and f.usage_bytes > 0
        assert f.chunking_strategy.type == "static"
        assert f.chunking_strategy.static.max_chunk_size_tokens == 800
        assert f.chunking_strategy.static.chunk_overlap_tokens == 400

    in_batch = shaped_list(
        client.vector_stores.file_batches.with_raw_response.list_files(batch.id, vector_store_id=store.id),
        VectorStoreFile,
    ).data
    assert {f.id for f in in_batch} == set(names.values())
    only_failed = client.vector_stores.file_batches.list_files(
        batch.id, vector_store_id=store.id, filter="failed"
    )
    assert [f.id for f in only_failed.data] == [names["broken.pdf"]]

    store_now = shaped(client.vector_stores.with_raw_response.retrieve(store.id), VectorStore)
    assert store_now.status == "completed"
    assert store_now.file_counts.completed == 3 and store_now.file_counts.failed == 1
    assert store_now.usage_bytes == sum(f.usage_bytes for f in completed)
    assert store_now.last_active_at >= store.created_at


def test_vector_store_file_id_is_the_file_id(client, library):
    store, _, names = library
    vs_file = shaped(
        client.vector_stores.files.with_raw_response.retrieve(names["kitchen.md"], vector_store_id=store.id),
        VectorStoreFile,
    )
    assert vs_file.id == names["kitchen.md"] and vs_file.vector_store_id == store.id
    assert vs_file.status == "completed" and vs_file.object == "vector_store.file"


def test_search_returns_the_file_that_holds_the_answer(client, library):
    store, _, names = library
    body = search(client, store.id, "What is the launch code of the Falcon project?")
    top = body["data"][0]
    assert top["file_id"] == names["falcon.docx"] and top["filename"] == "falcon.docx"
    assert "AZURE-7731" in top["content"][0]["text"]
    assert body["search_query"] == ["What is the launch code of the Falcon project?"]

    body = search(client, store.id, "When do the reservoir pumps run?", max_num_results=2)
    assert len(body["data"]) <= 2
    assert body["data"][0]["file_id"] == names["orchard.pdf"]
    assert "Tuesday" in body["data"][0]["content"][0]["text"]

    body = search(client, store.id, ["sourdough starter", "rye flour"])
    assert body["search_query"] == ["sourdough starter", "rye flour"]
    assert body["data"][0]["file_id"] == names["kitchen.md"]
    # the SDK's own page object reads `data`
    page = client.vector_stores.search(store.id, query="Falcon launch code")
    assert page.data[0].file_id == names["falcon.docx"]


def test_search_threshold_ranker_and_limits(client, library):
    store, _, _ = library
    everything = search(
        client, store.id, "apples", max_num_results=50, ranking_options={"score_threshold": 0}
    )
    assert 1 <= len(everything["data"]) <= 50
    scores = [item["score"] for item in everything["data"]]
    assert scores == sorted(scores, reverse=True)
    strict = search(client, store.id, "apples", ranking_options={"score_threshold": 0.99})
    assert all(item["score"] >= 0.99 for item in strict["data"])
    vector_only = search(client, store.id, "apples", ranking_options={"ranker": "none"}, rewrite_query=True)
    assert vector_only["data"]
    with api_error(openai.BadRequestError, 400, param="max_num_results"):
        client.vector_stores.search(store.id, query="x", max_num_results=51)
    with api_error(openai.BadRequestError, 400, param="ranking_options.score_threshold"):
        client.vector_stores.search(store.id, query="x", ranking_options={"score_threshold": 2})
    with api_error(openai.BadRequestError, 400, param="query"):
        client.vector_stores.with_raw_response.search(store.id, query=None)  # type: ignore[arg-type]


def test_file_content_pages(client, library):
    store, _, names = library
    page = client.vector_stores.files.content(names["orchard.pdf"], vector_store_id=store.id)
    texts = [item.text for item in page.data]
    assert len(texts) == 2 and "Irrigation" in texts[1]
    raw = client.vector_stores.files.with_raw_response.content(names["kitchen.md"], vector_store_id=store.id)
    body = raw_json(raw)
    assert body["object"] == "vector_store.file_content.page"
    assert body["has_more"] is False and body["next_page"] is None
    assert body["data"] == [{"type": "text", "text": MARKDOWN}]


def _attach(client, store_id: str, name: str, text: str, **kwargs) -> VectorStoreFile:
    file = client.files.create(file=(name, text.encode()), purpose="assistants")
    return client.vector_stores.files.create_and_poll(file_id=file.id, vector_store_id=store_id, **kwargs)


def test_attribute_filters(client):
    store = client.vector_stores.create(name="filters")
    a = _attach(
        client,
        store.id,
        "a.txt",
        "Quarterly revenue grew in spring.",
        attributes={"year": 2023, "lang": "en"},
    )
    b = _attach(
        client,
        store.id,
        "b.txt",
        "Quarterly revenue fell in autumn.",
        attributes={"year": 2024, "lang": "fr"},
    )
    c = _attach(client, store.id, "c.txt", "Quarterly revenue was flat.", attributes={"draft": True})
    assert a.attributes == {"year": 2023, "lang": "en"}

    def ids(flt) -> set[str]:
        return {
            item["file_id"] for item in search(client, store.id, "quarterly revenue", filters=flt)["data"]
        }

    assert ids({"key": "lang", "type": "eq", "value": "fr"}) == {b.id}
    assert ids({"key": "lang", "type": "ne", "value": "fr"}) == {a.id, c.id}
    assert ids({"key": "year", "type": "gt", "value": 2023}) == {b.id}
    assert ids({"key": "year", "type": "lte", "value": 2024}) == {a.id, b.id}
    assert ids({"key": "year", "type": "in", "value": [2023, 2025]}) == {a.id}
    assert ids({"key": "lang", "type": "nin", "value": ["en"]}) == {b.id, c.id}
    assert ids({"key": "draft", "type": "eq", "value": True}) == {c.id}
    both = {
        "type": "and",
        "filters": [
            {"key": "year", "type": "gte", "value": 2023},
            {"key": "lang", "type": "eq", "value": "en"},
        ],
    }
    assert ids(both) == {a.id}
    either = {
        "type": "or",
        "filters": [
            {"key": "lang", "type": "eq", "value": "fr"},
            {"key": "draft", "type": "eq", "value": True},
        ],
    }
    assert ids(either) == {b.id, c.id}

    updated = shaped(
        client.vector_stores.files.with_raw_response.update(
            a.id, vector_store_id=store.id, attributes={"lang": "fr"}
        ),
        VectorStoreFile,
    )
    assert updated.attributes == {"lang": "fr"}
    assert ids({"key": "lang", "type": "eq", "value": "fr"}) == {a.id, b.id}
    hit = search(
        client, store.id, "revenue grew in spring", filters={"key": "lang", "type": "eq", "value": "fr"}
    )
    assert hit["data"][0]["attributes"] == {"lang": "fr"}
    with api_error(openai.BadRequestError, 400, param="filters.value", message="take a list"):
        client.vector_stores.search(store.id, query="x", filters={"key": "year", "type": "in", "value": 3})


def test_static_chunking_is_honoured(client):
    from tokenizers import Tokenizer

    from assistd.tools.file_search.embedding import default_model_path

    text = " ".join(
        f"Entry {i}: the lighthouse keeper logs ship number {i * 7} at harbour gate." for i in range(60)
    )
    tokenizer = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    n_tokens = len(tokenizer.encode(text, add_special_tokens=False).ids)
    store = client.vector_stores.create(name="static")
    file = client.files.create(file=("log.txt", text.encode()), purpose="assistants")
    strategy = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20}}
    vs_file = client.vector_stores.files.create_and_poll(
        file_id=file.id, vector_store_id=store.id, chunking_strategy=strategy, attributes={"tag": "static"}
    )
    assert vs_file.status == "completed"
    assert vs_file.chunking_strategy.static.max_chunk_size_tokens == 100
    assert vs_file.chunking_strategy.static.chunk_overlap_tokens == 20
    expected = 1 + math.ceil((n_tokens - 100) / 80)
    assert expected <= 50
    hits = search(client, store.id, "lighthouse keeper ship harbour", max_num_results=50)["data"]
    assert len(hits) == expected, (len(hits), n_tokens)
    for hit in hits:
        assert len(tokenizer.encode(hit["content"][0]["text"], add_special_tokens=False).ids) <= 100

    auto = client.vector_stores.files.create_and_poll(
        file_id=file.id, vector_store_id=client.vector_stores.create().id
    )
    assert auto.chunking_strategy.static.max_chunk_size_tokens == 800

    bad = [
        (
            {"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0},
            "max_chunk_size_tokens",
            "between 100 and 4096",
        ),
        (
            {"max_chunk_size_tokens": 5000, "chunk_overlap_tokens": 0},
            "max_chunk_size_tokens",
            "between 100 and 4096",
        ),
        ({"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 101}, "chunk_overlap_tokens", "half"),
    ]
    for numbers, field, message in bad:
        param = f"chunking_strategy.static.{field}"
        with api_error(openai.BadRequestError, 400, param=param, message=message):
            client.vector_stores.files.create(
                file_id=file.id,
                vector_store_id=store.id,
                chunking_strategy={"type": "static", "static": numbers},
            )


def test_detach_and_file_delete_remove_chunks(client):
    store = client.vector_stores.create(name="deletions")
    kept = _attach(client, store.id, "kept.txt", "Penguins waddle across the Antarctic ice shelf.")
    gone = _attach(client, store.id, "gone.txt", "The tangerine submarine surfaces near Oslo harbour.")
    assert search(client, store.id, "tangerine submarine")["data"][0]["file_id"] == gone.id

    deleted = shaped(
        client.vector_stores.files.with_raw_response.delete(gone.id, vector_store_id=store.id),
        VectorStoreFileDeleted,
    )
    assert (deleted.id, deleted.object, deleted.deleted) == (gone.id, "vector_store.file.deleted", True)
    assert client.files.retrieve(gone.id).id == gone.id  # detaching keeps the File
    results = search(client, store.id, "tangerine submarine", max_num_results=50)["data"]
    assert gone.id not in {r["file_id"] for r in results}
    with api_error(openai.NotFoundError, 404):
        client.vector_stores.files.retrieve(gone.id, vector_store_id=store.id)

    # deleting the File detaches it from every store and removes its chunks
    other = client.vector_stores.create(name="deletions-2", file_ids=[kept.id])
    wait_store(client, other.id)
    assert search(client, other.id, "penguins")["data"][0]["file_id"] == kept.id
    client.files.delete(kept.id)
    for store_id in (store.id, other.id):
        assert search(client, store_id, "penguins waddle", max_num_results=50)["data"] == []
        assert client.vector_stores.retrieve(store_id).file_counts.total == 0
        with api_error(openai.NotFoundError, 404):
            client.vector_stores.files.retrieve(kept.id, vector_store_id=store_id)


def test_batch_cancel(client):
    store = client.vector_stores.create(name="cancel")
    text = " ".join(f"Paragraph {i} describes the migration of cranes over the valley." for i in range(4000))
    big = client.files.create(file=("big.txt", text.encode()), purpose="assistants")
    small = client.files.create(file=("small.txt", b"Cranes fly south."), purpose="assistants")
    batch = client.vector_stores.file_batches.create(store.id, file_ids=[big.id, small.id])
    cancelled = shaped(
        client.vector_stores.file_batches.with_raw_response.cancel(batch.id, vector_store_id=store.id),
        VectorStoreFileBatch,
    )
    assert cancelled.status == "cancelled"
    assert cancelled.file_counts.in_progress == 0
    assert cancelled.file_counts.cancelled + cancelled.file_counts.completed == 2
    assert client.vector_stores.files.retrieve(big.id, vector_store_id=store.id).status == "cancelled"
    final = wait_store(client, store.id)
    assert final.file_counts.in_progress == 0 and final.status == "completed"
    time.sleep(1.5)  # the worker notices the cancel at its next batch and drops what it wrote
    hits = search(client, store.id, "migration of cranes", max_num_results=50)["data"]
    assert big.id not in {h["file_id"] for h in hits}


def test_store_crud_shapes_and_pagination(client):
    made = [
        shaped(
            client.vector_stores.with_raw_response.create(
                name=f"crud-{i}",
                metadata={"i": str(i)},
                expires_after={"anchor": "last_active_at", "days": 2},
            ),
            VectorStore,
        )
        for i in range(3)
    ]
    first = made[0]
    assert first.object == "vector_store" and first.id.startswith("vs_")
    assert first.status == "completed" and first.usage_bytes == 0
    assert first.file_counts.total == 0
    assert first.expires_after.days == 2
    assert first.expires_at == first.last_active_at + 2 * 86400
    page = shaped_list(
        client.vector_stores.with_raw_response.list(limit=2, order="asc", after=first.id), VectorStore
    )
    assert [s.id for s in page.data] == [made[1].id, made[2].id]

    updated = shaped(
        client.vector_stores.with_raw_response.update(
            first.id, name="renamed", expires_after=None, metadata={"k": "v"}
        ),
        VectorStore,
    )
    assert (updated.name, updated.expires_after, updated.expires_at, updated.metadata) == (
        "renamed",
        None,
        None,
        {"k": "v"},
    )
    body = raw_json(client.vector_stores.with_raw_response.retrieve(first.id))
    assert body["expires_after"] is None and body["expires_at"] is None

    deleted = shaped(client.vector_stores.with_raw_response.delete(first.id), VectorStoreDeleted)
    assert (deleted.id, deleted.object, deleted.deleted) == (first.id, "vector_store.deleted", True)
    with api_error(openai.NotFoundError, 404, message=f"No vector store found with id '{first.id}'."):
        client.vector_stores.retrieve(first.id)
    with api_error(openai.BadRequestError, 400, param="file_ids[0]"):
        client.vector_stores.create(file_ids=["file-missing"])
    with api_error(openai.BadRequestError, 400, param="expires_after.days"):
        client.vector_stores.create(expires_after={"anchor": "last_active_at", "days": 0})
    with api_error(openai.BadRequestError, 400, param="filter"):
        client.vector_stores.files.list(made[1].id, filter="done")  # type: ignore[arg-type]


def test_create_with_file_ids_and_batch_files_form(client):
    files = [
        client.files.create(file=(f"n{i}.txt", f"Note {i} about owls.".encode()), purpose="assistants")
        for i in range(2)
    ]
    store = client.vector_stores.create(
        name="with-files",
        file_ids=[files[0].id],
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50},
        },
    )
    assert store.file_counts.total == 1
    batch = client.vector_stores.file_batches.create_and_poll(
        store.id, files=[{"file_id": files[1].id, "attributes": {"n": 1}}]
    )
    assert batch.file_counts.completed == 1
    done = wait_store(client, store.id)
    assert done.file_counts.completed == 2
    vs_file = client.vector_stores.files.retrieve(files[0].id, vector_store_id=store.id)
    assert vs_file.chunking_strategy.static.max_chunk_size_tokens == 200
    assert client.vector_stores.files.retrieve(files[1].id, vector_store_id=store.id).attributes == {"n": 1}
    with api_error(openai.BadRequestError, 400):
        client.vector_stores.file_batches.create(
            store.id, file_ids=[files[0].id], files=[{"file_id": files[1].id}]
        )


def test_inline_store_on_thread_creation(client):
    file = client.files.create(
        file=("manual.md", b"The boiler pressure must stay below 2 bar."), purpose="assistants"
    )
    thread = client.beta.threads.create(
        tool_resources={"file_search": {"vector_stores": [{"file_ids": [file.id]}]}}
    )
    store_ids = thread.tool_resources.file_search.vector_store_ids
    assert len(store_ids) == 1 and store_ids[0].startswith("vs_")
    store = wait_store(client, store_ids[0])
    assert store.file_counts.completed == 1
    assert search(client, store.id, "boiler pressure")["data"][0]["file_id"] == file.id
    with api_error(openai.BadRequestError, 400, param="tool_resources.file_search.vector_store_ids[0]"):
        client.beta.threads.create(tool_resources={"file_search": {"vector_store_ids": ["vs_missing"]}})
    bad = {"type": "static", "static": {"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0}}
    param = "tool_resources.file_search.vector_stores[0].chunking_strategy"
    with api_error(openai.BadRequestError, 400, param=param, message="between 100 and 4096"):
        client.beta.threads.create(
            tool_resources={
                "file_search": {"vector_stores": [{"file_ids": [file.id], "chunking_strategy": bad}]}
            }
        )
    assistant = client.beta.assistants.create(
        model="SmolLM2-135M-Instruct",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_stores": [{"file_ids": [file.id]}]}},
    )
    assert assistant.tool_resources.file_search.vector_store_ids[0].startswith("vs_")


def test_message_attachments_join_the_thread_store(client):
    file = client.files.create(
        file=("faq.txt", b"Refunds are processed within 14 days."), purpose="assistants"
    )
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(
        thread.id,
        role="user",
        content="How long do refunds take?",
        attachments=[{"file_id": file.id, "tools": [{"type": "file_search"}]}],
    )
    thread = client.beta.threads.retrieve(thread.id)
    store_ids = thread.tool_resources.file_search.vector_store_ids
    assert len(store_ids) == 1
    store = wait_store(client, store_ids[0])
    assert store.file_counts.completed == 1
    assert search(client, store.id, "refund processing time")["data"][0]["file_id"] == file.id
    # a second attachment goes to the same store; a code_interpreter-only attachment does not
    other = client.files.create(file=("more.txt", b"Exchanges are free."), purpose="assistants")
    client.beta.threads.messages.create(
        thread.id,
        role="user",
        content="and?",
        attachments=[{"file_id": other.id, "tools": [{"type": "file_search"}]}],
    )
    code_only = client.files.create(file=("data.csv", b"a,b\n1,2\n"), purpose="assistants")
    client.beta.threads.messages.create(
        thread.id,
        role="user",
        content="x",
        attachments=[{"file_id": code_only.id, "tools": [{"type": "code_interpreter"}]}],
    )
    assert client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids == store_ids
    assert wait_store(client, store.id).file_counts.total == 2
    client.beta.threads.delete(thread.id)  # the store made for the attachments goes with the thread
    with api_error(openai.NotFoundError, 404):
        client.vector_stores.retrieve(store.id)


def test_project_isolation(client, client_b, library):
    store, batch, names = library
    with api_error(openai.NotFoundError, 404):
        client_b.vector_stores.retrieve(store.id)
    with api_error(openai.NotFoundError, 404):
        client_b.vector_stores.search(store.id, query="Falcon")
    with api_error(openai.NotFoundError, 404):
        client_b.vector_stores.files.list(store.id)
    with api_error(openai.NotFoundError, 404):
        client_b.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    with api_error(openai.NotFoundError, 404):
        client_b.vector_stores.delete(store.id)
    assert store.id not in {s.id for s in client_b.vector_stores.list(limit=100).data}
    mine = client_b.vector_stores.create(name="b")
    with api_error(openai.BadRequestError, 400, param="file_id"):
        client_b.vector_stores.files.create(vector_store_id=mine.id, file_id=names["kitchen.md"])
    with api_error(openai.BadRequestError, 400, param="tool_resources.file_search.vector_store_ids[0]"):
        client_b.beta.threads.create(tool_resources={"file_search": {"vector_store_ids": [store.id]}})
