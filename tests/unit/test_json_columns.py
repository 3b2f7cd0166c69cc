"""JSON columns are read with orjson (a run's row has a dozen of them, read several times a run: issue 20),
and come back exactly as they were written: an integer past 64 bits (a JSON schema's bound), NaN and
Infinity, non-ASCII text and a lone surrogate, on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import pytest

from assistd.storage.assistants import AssistantRow
from assistd.storage.db import json_loads
from tests.unit.engine_support import PROJECT


@pytest.fixture
def db(each_db):  # SQLite and PostgreSQL (tests/conftest.py)
    return each_db


META = {"k": "v"}
SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "maximum": 99999999999999999999, "minimum": -(2**63)}},
    "description": "café ✓ 日本語",
}


def test_a_json_column_reads_back_exactly_what_was_written(db):
    tools = [{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}]
    with db.session() as s:
        row = AssistantRow(id="asst_j", project=PROJECT, created_at=1, model="m", tools=tools, meta=META)
        s.add(row)
    with db.session() as s:
        row = s.get(AssistantRow, "asst_j")
        assert row.tools == tools
        bound = row.tools[0]["function"]["parameters"]["properties"]["n"]["maximum"]
        assert bound == 99999999999999999999 and isinstance(bound, int)
        assert row.meta == META


def test_what_orjson_refuses_or_reads_differently_is_read_by_the_standard_library():
    assert json_loads('{"a": 123456789012345678901234567890}') == {"a": 123456789012345678901234567890}
    assert json_loads(b"[1e400, 99999999999999999999]")[1] == 99999999999999999999
    special = json_loads("[NaN, Infinity, -Infinity]")
    assert math.isnan(special[0]) and special[1:] == [math.inf, -math.inf]
    assert json_loads('"\\ud800"') == "\ud800"
    assert json_loads(b'{"x": [1, 2.5, "y", null, true]}') == {"x": [1, 2.5, "y", None, True]}
