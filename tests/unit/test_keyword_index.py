"""KeywordIndex on SQLite (FTS5) and PostgreSQL (tsvector + GIN): ranking, scopes, deletes, NUL, backfill."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

from assistd.storage.db import Database
from assistd.storage.keywords import create_keyword_tables, drop_keyword_tables, has_keyword_tables
from assistd.storage.vector_stores import VectorStoreRow
from assistd.tools.file_search.keywords import KeywordIndex
from assistd.tools.file_search.store import StoredChunk

DOCS = [
    "The zebra grazes on the savanna grass",
    "Quarterly revenue grew by twelve percent",
    "A zebra and a lion at the watering hole",
    "Revenue forecasts for the next quarter",
    "Grass seeds need water and sunlight",
]
_names = itertools.count()


def _tables(db: Database) -> None:
    """The tables of the models (migration 0004 only needs vector_stores to exist before it)."""
    from assistd.storage import tables  # noqa: F401  (registers every table)

    SQLModel.metadata.create_all(db.engine)


def _database(url: str) -> Database:
    db = Database(url)
    _tables(db)
    with db.engine.begin() as conn:
        if not has_keyword_tables(conn):
            create_keyword_tables(conn)
    return db


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    if request.param == "sqlite":
        database = _database(f"sqlite:///{tmp_path}/k.db")
    else:
        server = request.getfixturevalue("postgres")
        database = _database(server.new_database(f"kw{next(_names)}"))
    yield database
    database.dispose()


def _fill(index: KeywordIndex, store: str = "vs_a") -> None:
    for i, doc in enumerate(DOCS):
        index.add(store, f"file-{i}", [(f"file-{i}#0", doc)])


def test_ranks_rare_words_first_and_filters_files(db):
    index = KeywordIndex(db)
    _fill(index)
    hits = index.search(["vs_a"], "zebra", 10)
    assert {h.chunk_id for h in hits} == {"file-0#0", "file-2#0"}
    assert all(h.score > 0 for h in hits)
    # "lion" is rarer than "zebra": the chunk with both comes first
    assert index.search(["vs_a"], "lion zebra", 10)[0].chunk_id == "file-2#0"
    assert [h.chunk_id for h in index.search(["vs_a"], "zebra", 10, ["file-2", "file-1"])] == ["file-2#0"]
    assert index.search(["vs_a"], "zebra", 10, []) == []
    assert index.search(["vs_a"], "unrelated words", 10) == []
    assert index.search(["vs_a"], "the and of", 10) == []  # stop words only
    assert len(index.search(["vs_a"], "revenue grass zebra", 2)) == 2
    assert index.search(["vs_b"], "zebra", 10) == []  # another store
    assert index.search(["vs_a"], "", 10) == []
    hit = index.search(["vs_a"], "Quarterly", 10)[0]
    assert (hit.store_id, hit.chunk_id, hit.file_id) == ("vs_a", "file-1#0", "file-1")


def test_query_syntax_is_not_interpreted(db):
    index = KeywordIndex(db)
    index.add("vs_a", "f", [("f#0", "error code E-1234 in module foo_bar (see NOT AND OR)")])
    for query in ('"E-1234', "foo_bar", "NOT OR AND e", "code:*", "'; DROP TABLE x; --", "e & 1234 | !x"):
        index.search(["vs_a"], query, 5)  # no syntax error whatever the user types
    assert [h.chunk_id for h in index.search(["vs_a"], "E-1234", 5)] == ["f#0"]
    assert [h.chunk_id for h in index.search(["vs_a"], "module", 5)] == ["f#0"]


def test_nul_is_stripped(db):
    index = KeywordIndex(db)
    index.add("vs_a", "f", [("f#0", "before\x00after nul")])
    assert [h.chunk_id for h in index.search(["vs_a"], "after", 5)] == ["f#0"]
    assert index.search(["vs_a"], "after\x00", 5)[0].chunk_id == "f#0"


def test_add_replaces_delete_file_and_drop(db):
    index = KeywordIndex(db)
    _fill(index)
    _fill(index, "vs_b")
    index.add("vs_a", "file-0", [("file-0#0", "now about apples")])  # re-indexed chunk replaces the old
    assert [h.chunk_id for h in index.search(["vs_a"], "zebra", 10)] == ["file-2#0"]
    assert [h.chunk_id for h in index.search(["vs_a"], "apples", 10)] == ["file-0#0"]
    index.delete_file("vs_a", "file-2")
    assert index.search(["vs_a"], "zebra", 10) == []
    assert len(index.search(["vs_b"], "zebra", 10)) == 2  # the other store keeps its copy
    index.drop("vs_b")
    assert index.search(["vs_b"], "zebra grass revenue", 10) == []
    both = index.search(["vs_a", "vs_b"], "revenue", 10)
    assert {(h.store_id, h.chunk_id) for h in both} == {("vs_a", "file-1#0"), ("vs_a", "file-3#0")}


def test_many_chunks_common_and_rare_words(db):
    index = KeywordIndex(db)
    common = [(f"big#{i}", f"common filler text number {i} common") for i in range(3000)]
    index.add("vs_a", "big", common)
    index.add("vs_a", "needle", [("needle#0", "common filler with a rare xylophone")])
    hits = index.search(["vs_a"], "common xylophone", 5)
    assert hits[0].chunk_id == "needle#0"
    assert len(index.search(["vs_a"], "common filler", 20)) == 20


def test_common_words_score_but_do_not_select(db, monkeypatch):
    from assistd.tools.file_search import keywords

    monkeypatch.setattr(keywords, "COMMON_TERM_ROWS", 50)  # "common" and "filler" are in 300 chunks
    monkeypatch.setattr(keywords, "PG_COMMON_TERM_ROWS", 50)
    index = KeywordIndex(db)
    index.add(
        "vs_a", "big", [(f"big#{i}", f"common filler number {i}" + " common" * (i % 3)) for i in range(300)]
    )
    index.add("vs_a", "needle", [("needle#0", "filler about a xylophone"), ("needle#1", "xylophone common")])
    for analyzed in (False, True):  # PostgreSQL: frequencies counted, then from ANALYZE's statistics
        if analyzed and db.is_postgres:
            with db.session() as s:
                s.execute(text("ANALYZE keyword_chunks"))
        hits = index.search(["vs_a"], "common xylophone", 10, total=302)
        assert {h.chunk_id for h in hits} == {"needle#0", "needle#1"}  # only chunks with the rare word
        if db.is_postgres:  # the common word adds to the score of the chunks that have it
            assert hits[0].chunk_id == "needle#1"
        # only common words: the chunks with all of them first, any of them when too few have all
        both = index.search(["vs_a"], "common filler", 20, total=302)
        assert len(both) == 20 and all(h.chunk_id.startswith("big#") for h in both)
        assert len(index.search(["vs_a"], "common filler", 400, total=302)) == 302


def test_backfill_once_under_the_database(db):
    # A store that existed before the keyword tables (migration 0004 lists it in keyword_backfill)
    with db.session() as s:
        s.execute(text("INSERT INTO keyword_backfill (store_id) VALUES ('vs_old')"))
    index, other = KeywordIndex(db), KeywordIndex(db)  # two nodes
    loads = []

    def load():
        loads.append(1)
        return [(f"file-{i}#0", f"file-{i}", doc) for i, doc in enumerate(DOCS)]

    # a file indexed after the upgrade keeps its (newer) text
    index.add("vs_old", "file-0", [("file-0#0", "fresh text about apples")])
    assert index.needs_backfill("vs_old")
    results = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(n.ensure_backfilled("vs_old", load)))
        for n in (index, other)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]  # one node wrote it
    assert not index.needs_backfill("vs_old") and not other.needs_backfill("vs_old")
    assert other.ensure_backfilled("vs_old", load) is False
    assert {h.chunk_id for h in other.search(["vs_old"], "zebra", 10)} == {"file-2#0"}
    assert [h.chunk_id for h in other.search(["vs_old"], "apples", 10)] == ["file-0#0"]
    assert len(loads) <= 2


def test_migration_marks_existing_stores_and_goes_down(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/m.db")
    _tables(db)
    with db.session() as s:
        s.add(VectorStoreRow(id="vs_x", project="p", created_at=1, last_active_at=1))
    with db.engine.begin() as conn:
        create_keyword_tables(conn)
    assert KeywordIndex(db).needs_backfill("vs_x")
    with db.engine.begin() as conn:
        drop_keyword_tables(conn)
        assert not has_keyword_tables(conn)


def test_top_hit_agrees_with_rank_bm25(db):
    from rank_bm25 import BM25Okapi

    from assistd.tools.file_search.bm25 import terms

    index = KeywordIndex(db)
    _fill(index)
    reference = BM25Okapi([terms(d) for d in DOCS], k1=1.2)
    for query in ("zebra grass", "revenue quarter", "water", "lion zebra watering", "seeds revenue"):
        theirs = reference.get_scores(terms(query))
        best = max(range(len(DOCS)), key=lambda i: theirs[i])
        mine = index.search(["vs_a"], query, 5)
        assert mine[0].chunk_id == f"file-{best}#0", query
        assert {h.chunk_id for h in mine} == {f"file-{i}#0" for i in range(len(DOCS)) if theirs[i] > 0}, query


class _FakeChroma:
    """Chroma's side of the retriever: chunks with unit vectors, nearest neighbours by dot product."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, tuple[StoredChunk, np.ndarray]]] = {}
        self.everything_reads = 0

    def put(self, store: str, file_id: str, texts: list[str], vectors: list[list[float]]) -> None:
        for i, (body, vec) in enumerate(zip(texts, vectors, strict=True)):
            v = np.asarray(vec, dtype=np.float32)
            chunk = StoredChunk(f"{file_id}#{i}", body, {"file_id": file_id, "chunk": i})
            self.rows.setdefault(store, {})[chunk.id] = (chunk, v / np.linalg.norm(v))

    def query(self, store_id, vector, k, file_ids):
        rows = [
            r
            for r in self.rows.get(store_id, {}).values()
            if file_ids is None or r[0].meta["file_id"] in file_ids
        ]
        rows.sort(key=lambda r: -float(np.dot(r[1], vector)))
        return [(c, float(np.dot(v, vector))) for c, v in rows[:k]]

    def fetch(self, store_id, ids):
        rows = self.rows.get(store_id, {})
        return {cid: rows[cid] for cid in ids if cid in rows}

    def everything(self, store_id):
        self.everything_reads += 1
        return [c for c, _ in self.rows.get(store_id, {}).values()]


class _Embedder:
    def encode_query(self, text: str) -> np.ndarray:
        return np.asarray([1.0, 0.0, 0.0], dtype=np.float32)


def test_hybrid_retriever_fuses_keyword_hits_from_the_database(db):
    from assistd.tools.file_search.retrieval import HybridRetriever, Scope

    chroma, index = _FakeChroma(), KeywordIndex(db)
    retriever = HybridRetriever(chroma, _Embedder(), index)  # type: ignore[arg-type]
    # f1's chunk is the vector's nearest neighbour; f2's chunk holds the exact rare word, a bit further away
    chroma.put("vs_a", "f1", ["a text about tea"], [[0.5, 0.866, 0.0]])
    chroma.put("vs_a", "f2", ["part number XK-3319 spec"], [[0.4, 0.9, 0.0]])
    for fid in ("f1", "f2"):
        index.add(
            "vs_a", fid, [(c.id, c.text) for c, _ in chroma.rows["vs_a"].values() if c.meta["file_id"] == fid]
        )
    scope = Scope("vs_a", {"f1": {"k": 1}, "f2": {}}, {"f1": "one.txt", "f2": "two.txt"}, complete=True)
    hits = retriever.search([scope], "XK-3319", 5)
    assert [h.file_id for h in hits][:2] == ["f2", "f1"]  # the keyword match outranks the nearest vector
    assert hits[0].text == "part number XK-3319 spec" and hits[0].filename == "two.txt"
    assert 0 < hits[0].score <= 1
    assert [h.file_id for h in retriever.search([scope], "XK-3319", 5, ranker="none")] == ["f1", "f2"]
    # a file out of scope never answers, from either side
    only_f1 = Scope("vs_a", {"f1": {}}, {"f1": "one.txt"})
    assert [h.file_id for h in retriever.search([only_f1], "XK-3319", 5)] == ["f1"]
    # a keyword hit Chroma no longer has (its file was removed meanwhile) is dropped
    del chroma.rows["vs_a"]["f2#0"]
    assert [h.file_id for h in retriever.search([scope], "XK-3319", 5)] == ["f1"]


def test_hybrid_retriever_backfills_an_old_store_once(db):
    from assistd.tools.file_search.retrieval import HybridRetriever, Scope

    chroma = _FakeChroma()
    chroma.put("vs_old", "f1", ["zebra crossing", "lion pride"], [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with db.session() as s:
        s.execute(text("INSERT INTO keyword_backfill (store_id) VALUES ('vs_old')"))
    nodes = [HybridRetriever(chroma, _Embedder(), KeywordIndex(db)) for _ in range(2)]  # type: ignore[arg-type]
    scope = Scope("vs_old", {"f1": {}}, {"f1": "f.txt"}, complete=True)
    for node in nodes + nodes:
        hits = node.search([scope], "lion", 1)
        assert [h.text for h in hits] == ["lion pride"]
    assert chroma.everything_reads == 1
