"""NUL on PostgreSQL: its text (and JSON text) cannot hold U+0000, so a value carrying one would fail the
whole statement (a 500). Text arrives from many places besides requests, which are refused at parse time:
extracted file text, code interpreter output, model output, filenames of uploads, function outputs. So it is
handled once, here, for every statement: U+0000 becomes U+FFFD (the replacement character) on PostgreSQL.
SQLite stores NUL as it is, so nothing is installed there.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Engine

NUL = "\x00"
REPLACEMENT = "\ufffd"


def install(engine: Engine) -> None:
    """Every string parameter of every statement on `engine` loses its NULs (see `json_serializer` for
    JSON columns, whose values are serialised before they get here)."""
    event.listen(engine, "before_cursor_execute", _scrub_statement, retval=True)


def json_serializer(value: Any) -> str:
    """json.dumps for JSON columns on PostgreSQL: a NUL anywhere in the value (keys too) is replaced first.
    (json.dumps writes NUL as the escape \\u0000, which PostgreSQL's jsonb and `->>` refuse.)"""
    text = json.dumps(value)
    if "\\u0000" not in text:
        return text
    return json.dumps(_replace_in(value))


def as_stored(value: Any) -> Any:
    """A JSON value as a PostgreSQL column keeps it (`json_serializer`): NULs replaced, or the value itself
    when it has none (what a process hands its own streams must be what the others read back)."""
    try:
        text = orjson.dumps(value)
    except TypeError:  # what orjson refuses (see engine/events.py `dumps`): looked through in Python
        return _replace_in(value)
    return _replace_in(value) if b"\\u0000" in text else value


def _replace_in(value: Any) -> Any:
    """A copy of a JSON value with NUL replaced in every string, without recursion (deep values exist)."""
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        parent, key = stack.pop()
        item = parent[key]
        if isinstance(item, str):
            parent[key] = item.replace(NUL, REPLACEMENT)
        elif isinstance(item, dict):
            copy = {k.replace(NUL, REPLACEMENT) if isinstance(k, str) else k: v for k, v in item.items()}
            parent[key] = copy
            stack.extend((copy, k) for k in copy)
        elif isinstance(item, (list, tuple)):
            copy_list = list(item)
            parent[key] = copy_list
            stack.extend((copy_list, i) for i in range(len(copy_list)))
    return root[0]


def _scrub_statement(conn, cursor, statement, parameters, context, executemany):
    return statement, _scrub(parameters)


def _scrub(parameters: Any) -> Any:
    if isinstance(parameters, dict):
        if any(isinstance(v, str) and NUL in v for v in parameters.values()):
            return {k: _clean(v) for k, v in parameters.items()}
        return parameters
    if isinstance(parameters, tuple):
        if any(isinstance(v, str) and NUL in v for v in parameters):
            return tuple(_clean(v) for v in parameters)
        return parameters
    if isinstance(parameters, list):
        return [_scrub(p) for p in parameters]
    return parameters


def _clean(value: Any) -> Any:
    return value.replace(NUL, REPLACEMENT) if isinstance(value, str) else value
