"""Score fusion, attribute filters (keyword ranking: test_keyword_index.py)."""

from __future__ import annotations

import pytest

from assistd.tools.file_search.filters import matches
from assistd.tools.file_search.fusion import VECTOR_WEIGHT, fuse, ranked


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
