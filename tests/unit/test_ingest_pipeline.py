"""The batch pipeline of tools/file_search/ingest.py on real components (embedded Chroma, the keyword index
in SQLite): the chunks of several files are embedded together and each file gets its own vectors back,
writes of several stores' files land in the right collections, and a file written again with fewer chunks
keeps none of its old ones, in Chroma and in the keyword index."""

from __future__ import annotations

import numpy as np

from assistd.storage.db import Database
from assistd.tools.file_search.chunking import Chunk
from assistd.tools.file_search.ingest import Embedded, Ingestor, Prepared
from assistd.tools.file_search.keywords import KeywordIndex
from assistd.tools.file_search.store import ChunkStore

DIM = 8


class TextEmbedder:
    """A vector per text that depends on the text only, and a record of the calls made."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode_documents(self, texts: list[str], tokens: list[int] | None = None) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([vector(t) for t in texts])


def vector(text: str) -> np.ndarray:
    rng = np.random.default_rng(abs(hash(text)) % 2**32)
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def prepared(store_id: str, file_id: str, texts: list[str]) -> Prepared:
    chunks = [Chunk(i, t, len(t.split())) for i, t in enumerate(texts)]
    return Prepared(file_id, store_id, file_id, f"{file_id}.txt", chunks)


def test_chunks_of_many_files_are_embedded_together_and_given_back_per_file():
    embedder = TextEmbedder()
    ingestor = Ingestor(None, embedder, extractor=object(), call_chunks=3)  # type: ignore[arg-type]
    files = [
        prepared("vs_a", "file-1", ["alpha one", "alpha two"]),
        prepared("vs_a", "file-2", ["beta one"]),
        prepared("vs_b", "file-3", ["gamma one", "gamma two", "gamma three"]),
    ]
    out = ingestor.embed(files)
    assert [len(call) for call in embedder.calls] == [3, 3]  # across files, `call_chunks` at a time
    for item, file in zip(out, files, strict=True):
        assert item.file is file
        expected = np.stack([vector(c.text) for c in file.chunks])
        assert np.allclose(item.vectors, expected)
        assert item.usage_bytes == sum(len(c.text.encode()) for c in file.chunks) + expected.nbytes


def test_a_write_goes_to_each_store_and_replaces_a_files_old_chunks(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.create_schema()
    store = ChunkStore(tmp_path / "chroma")
    keywords = KeywordIndex(db)
    ingestor = Ingestor(store, TextEmbedder(), extractor=object(), keywords=keywords)  # type: ignore[arg-type]
    first = [
        prepared("vs_a", "file-1", ["walrus tusks", "walrus diet", "walrus range"]),
        prepared("vs_a", "file-2", ["narwhal tusk"]),
        prepared("vs_b", "file-3", ["beluga song"]),
    ]
    ingestor.write(ingestor.embed(first))
    assert (store.count("vs_a"), store.count("vs_b")) == (4, 1)
    assert store.count("vs_a", "file-1") == 3
    assert {h.chunk_id for h in keywords.search(["vs_a"], "walrus", 10)} == {
        "file-1#0",
        "file-1#1",
        "file-1#2",
    }

    again = [prepared("vs_a", "file-1", ["walrus tusks rechunked"])]  # attached again: one chunk now
    ingestor.write([Embedded(again[0], np.stack([vector("x")]))])
    assert [c.text for c in store.file_chunks("vs_a", "file-1")] == ["walrus tusks rechunked"]
    assert [h.chunk_id for h in keywords.search(["vs_a"], "walrus", 10)] == ["file-1#0"]
    assert store.count("vs_a", "file-2") == 1  # the other file of the store is untouched

    ingestor.remove("vs_a", "file-2")
    assert store.count("vs_a", "file-2") == 0 and keywords.search(["vs_a"], "narwhal", 10) == []
    db.dispose()
