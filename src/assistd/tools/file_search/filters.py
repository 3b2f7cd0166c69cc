"""Attribute filters of the search endpoint, evaluated on a vector store file's `attributes`.

Comparison: {key, type: eq|ne|gt|gte|lt|lte|in|nin, value}; compound: {type: and|or, filters: [...]}.
A file without the key matches only `ne` and `nin`; ordering compares numbers with numbers and strings
with strings (anything else does not match)."""

from __future__ import annotations

from typing import Any

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
COMPOUNDS = ("and", "or")


def matches(attributes: dict[str, Any] | None, flt: dict[str, Any] | None) -> bool:
    if flt is None:
        return True
    attributes = attributes or {}
    kind = flt["type"]
    if kind == "and":
        return all(matches(attributes, f) for f in flt["filters"])
    if kind == "or":
        return any(matches(attributes, f) for f in flt["filters"])
    present = flt["key"] in attributes
    actual, expected = attributes.get(flt["key"]), flt["value"]
    if kind in ("ne", "nin"):
        return not present or not _compare("eq" if kind == "ne" else "in", actual, expected)
    return present and _compare(kind, actual, expected)


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    return actual == expected


def _orderable(actual: Any, expected: Any) -> bool:
    numbers = (int, float)
    if isinstance(actual, bool) or isinstance(expected, bool):
        return False
    both_numbers = isinstance(actual, numbers) and isinstance(expected, numbers)
    return both_numbers or (isinstance(actual, str) and isinstance(expected, str))


def _compare(kind: str, actual: Any, expected: Any) -> bool:
    if kind == "eq":
        return _same(actual, expected)
    if kind == "in":
        return isinstance(expected, list) and any(_same(actual, item) for item in expected)
    if not _orderable(actual, expected):
        return False
    if kind == "gt":
        return actual > expected
    if kind == "gte":
        return actual >= expected
    if kind == "lt":
        return actual < expected
    return actual <= expected  # lte
