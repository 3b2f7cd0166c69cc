"""BM25 (against rank_bm25), score fusion, attribute filters."""

from __future__ import annotations

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from assistd.tools.file_search.bm25 import BM25Index, terms
from assistd.tools.file_search.filters import matches
from assistd.tools.file_search.fusion import VECTOR_WEIGHT, fuse, ranked

DOCS = [
    "The zebra grazes on the savanna grass",
    "Quarterly revenue grew by twelve percent",
    "A zebra and a lion at the watering hole",
    "Revenue forecasts for the next quarter",
    "Grass seeds need water and sunlight",
]


def test_bm25_ranks_like_rank_bm25():
    ours = BM25Index(DOCS)
    reference = BM25Okapi([terms(d) for d in DOCS])
    for query in ("zebra grass", "revenue quarter", "water", "lion zebra watering"):
        mine = ours.scores(query)
        theirs = reference.get_scores(terms(query))
        hits = [i for i in range(len(DOCS)) if theirs[i] > 0 or mine[i] > 0]
        assert sorted(hits, key=lambda i: -mine[i]) == sorted(hits, key=lambda i: -theirs[i]), query


def test_bm25_top_and_mask():
    index = BM25Index(DOCS)
    top = index.top("zebra", 5)
    assert {doc for doc, _ in top} == {0, 2}
    assert all(score > 0 for _, score in top)
    mask = np.array([False, True, True, True, True])
    assert [doc for doc, _ in index.top("zebra", 5, mask)] == [2]
    assert index.top("unrelated words", 5) == []
    assert index.top("the and of", 5) == []  # stop words only
    assert len(index.top("revenue grass zebra", 2)) == 2
    assert BM25Index([]).top("x", 3) == []


def test_fusion_is_a_weighted_sum_in_0_1():
    fused = fuse({"a": 0.9, "b": 0.5, "c": -0.2}, {"b": 8.0, "d": 4.0})
    assert fused["a"] == pytest.approx(VECTOR_WEIGHT * 0.9)
    assert fused["b"] == pytest.approx(VECTOR_WEIGHT * 0.5 + (1 - VECTOR_WEIGHT) * 1.0)
    assert fused["c"] == 0.0  # negative similarity clamps to 0
    assert fused["d"] == pytest.approx((1 - VECTOR_WEIGHT) * 0.5)
    assert all(0 <= v <= 1 for v in fused.values())
    assert fuse({"a": 1.0}, {"a": 3.0})["a"] == pytest.approx(1.0)
    assert fuse({"a": 0.4}, {}) == {"a": pytest.approx(VECTOR_WEIGHT * 0.4)}


def test_ranked_applies_threshold_then_limit():
    scores = {"a": 0.9, "b": 0.2, "c": 0.5, "d": 0.5}
    assert ranked(scores, 0.0, 3) == [("a", 0.9), ("c", 0.5), ("d", 0.5)]
    assert ranked(scores, 0.5, 10) == [("a", 0.9), ("c", 0.5), ("d", 0.5)]
    assert ranked(scores, 0.95, 10) == []


ATTRS = {"year": 2024, "lang": "en", "draft": False, "score": 4.5}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"key": "lang", "type": "eq", "value": "en"}, True),
        ({"key": "lang", "type": "eq", "value": "fr"}, False),
        ({"key": "lang", "type": "ne", "value": "fr"}, True),
        ({"key": "missing", "type": "ne", "value": "x"}, True),
        ({"key": "missing", "type": "eq", "value": "x"}, False),
        ({"key": "year", "type": "gt", "value": 2023}, True),
        ({"key": "year", "type": "gte", "value": 2024}, True),
        ({"key": "year", "type": "lt", "value": 2024}, False),
        ({"key": "score", "type": "lte", "value": 4.5}, True),
        ({"key": "year", "type": "gt", "value": "2023"}, False),  # number vs string: no match
        ({"key": "lang", "type": "gt", "value": "de"}, True),  # strings compare as strings
        ({"key": "draft", "type": "eq", "value": False}, True),
        ({"key": "draft", "type": "eq", "value": 0}, False),  # booleans are not numbers
        ({"key": "year", "type": "eq", "value": 2024.0}, True),
        ({"key": "year", "type": "in", "value": [2023, 2024]}, True),
        ({"key": "lang", "type": "in", "value": ["fr", "de"]}, False),
        ({"key": "lang", "type": "nin", "value": ["fr", "de"]}, True),
        ({"key": "missing", "type": "nin", "value": ["a"]}, True),
        (
            {
                "type": "and",
                "filters": [
                    {"key": "lang", "type": "eq", "value": "en"},
                    {
                        "type": "or",
                        "filters": [
                            {"key": "year", "type": "lt", "value": 2000},
                            {"key": "draft", "type": "eq", "value": False},
                        ],
                    },
                ],
            },
            True,
        ),
        (
            {
                "type": "and",
                "filters": [
                    {"key": "lang", "type": "eq", "value": "en"},
                    {"key": "year", "type": "lt", "value": 2000},
                ],
            },
            False,
        ),
        (None, True),
    ],
)
def test_filters(flt, expected):
    assert matches(ATTRS, flt) is expected


def test_filters_on_files_without_attributes():
    assert matches(None, {"key": "a", "type": "eq", "value": 1}) is False
    assert matches({}, {"key": "a", "type": "nin", "value": [1]}) is True


class _FakeChunks:
    def __init__(self) -> None:
        self.docs: dict[str, list[str]] = {}
        self.reads = 0

    def everything(self, store_id: str):
        from assistd.tools.file_search.store import StoredChunk

        self.reads += 1
        return [
            StoredChunk(f"f#{i}", text, {"file_id": "f", "chunk": i})
            for i, text in enumerate(self.docs[store_id])
        ]

    def query(self, store_id, vector, k, file_ids):
        return []

    def vectors(self, store_id, ids):
        return {}


class _FakeEmbedder:
    def encode_query(self, text: str) -> np.ndarray:
        return np.zeros(4, dtype=np.float32)


def test_keyword_index_cache(monkeypatch):
    import time

    from assistd.tools.file_search import retrieval
    from assistd.tools.file_search.retrieval import HybridRetriever, Scope

    chunks = _FakeChunks()
    retriever = HybridRetriever(chunks, _FakeEmbedder())  # type: ignore[arg-type]

    def texts(store: str, version: int, query: str) -> list[str]:
        scope = Scope(store, version, {"f": {}}, {"f": "f.txt"}, complete=True)
        return [hit.text for hit in retriever.search([scope], query, 5)]

    chunks.docs["vs_a"] = ["apples and pears", "plums"]
    assert texts("vs_a", 1, "apples") == ["apples and pears"]
    assert texts("vs_a", 1, "plums") == ["plums"] and chunks.reads == 1  # cached
    chunks.docs["vs_a"] = ["apples and pears", "plums", "cherries"]
    assert texts("vs_a", 2, "cherries") == ["cherries"] and chunks.reads == 2  # small store: rebuilt at once

    monkeypatch.setattr(retrieval, "BACKGROUND_REBUILD_CHUNKS", 2)
    chunks.docs["vs_a"] = ["apples and pears", "plums", "cherries", "dates"]
    assert texts("vs_a", 3, "dates") == []  # big store: the stale index answers while it is rebuilt
    deadline = time.monotonic() + 5
    while chunks.reads < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert texts("vs_a", 3, "dates") == ["dates"]

    monkeypatch.setattr(retrieval, "MAX_CORPORA", 2)
    for store in ("vs_b", "vs_c", "vs_d"):
        chunks.docs[store] = ["figs"]
        assert texts(store, 1, "figs") == ["figs"]
    assert list(retriever._corpora) == ["vs_c", "vs_d"]  # least recently used went
