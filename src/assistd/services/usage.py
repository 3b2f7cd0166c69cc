"""Usage figures per project, in the shape of OpenAI's organization usage API: tokens of runs and responses
and code interpreter sessions (the hosted API billed per session), in time buckets.

The query is validated as the hosted API does (`bucket_width` 1m/1h/1d with at most 1440/168/31 buckets a
page) and each page is counted by ONE grouped query, so a request costs the same whatever its range."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal, union_all
from sqlmodel import col, select

from assistd.errors import InvalidRequest
from assistd.ids import now
from assistd.storage.db import Database
from assistd.storage.responses import ResponseRow
from assistd.storage.retry import retrying
from assistd.storage.runs import RunRow
from assistd.storage.usage import UsageEventRow

CODE_SESSION = "code_interpreter_session"
BUCKET_SECONDS = {"1m": 60, "1h": 3600, "1d": 86400}
# Buckets a page holds per bucket_width: (default, maximum), as the hosted API documents them.
BUCKET_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
TIMESTAMP = re.compile(r"\d{1,12}")  # Unix seconds; 12 digits reach far past any real date
CURSOR = "page_"
SESSION_KEY_WINDOW = 86400  # seconds back a code session's key is looked for before it is counted


@dataclass(frozen=True)
class UsageWindow:
    """One page of buckets: `first` (a bucket boundary) up to `stop`; events counted from `start`."""

    start: int
    end: int
    width: int
    first: int
    stop: int

    @property
    def has_more(self) -> bool:
        return self.stop < self.end

    def bucket_starts(self) -> range:
        return range(self.first, self.stop, self.width)

    def next_page(self) -> str | None:
        if not self.has_more:
            return None
        return CURSOR + base64.urlsafe_b64encode(str(self.stop).encode()).decode()


def parse_window(query: Mapping[str, Any], current_time: int) -> UsageWindow:
    """The page a usage query asks for; a 400 naming the parameter for anything the hosted API refuses."""
    width_name = query.get("bucket_width") or "1d"
    if width_name not in BUCKET_SECONDS:
        raise InvalidRequest(
            f"Invalid value for 'bucket_width': '{width_name}'. Supported values are: '1m', '1h' and '1d'.",
            param="bucket_width",
            code="invalid_value",
        )
    width = BUCKET_SECONDS[width_name]
    if query.get("start_time") in (None, ""):
        raise InvalidRequest("Missing required parameter: 'start_time'.", param="start_time")
    start = _timestamp(query, "start_time")
    end = _timestamp(query, "end_time") if query.get("end_time") not in (None, "") else current_time + 1
    if end <= start:
        raise InvalidRequest(
            f"Invalid 'end_time': {end} is not after 'start_time' ({start}).", param="end_time"
        )
    limit = _limit(query.get("limit"), width_name)
    first = start - start % width
    if query.get("page"):
        first = _cursor(str(query["page"]), first, end, width)
    stop = min(end, first + limit * width)
    return UsageWindow(start=max(start, first), end=end, width=width, first=first, stop=stop)


def _timestamp(query: Mapping[str, Any], name: str) -> int:
    value = str(query[name])
    if not TIMESTAMP.fullmatch(value):
        raise InvalidRequest(
            f"Invalid '{name}': expected a Unix timestamp in seconds (a non-negative integer), "
            f"got '{value[:40]}'.",
            param=name,
            code="invalid_value",
        )
    return int(value)


def _limit(value: Any, width_name: str) -> int:
    default, maximum = BUCKET_LIMITS[width_name]
    if value in (None, ""):
        return default
    text = str(value)
    if not re.fullmatch(r"\d{1,9}", text) or not 1 <= int(text) <= maximum:
        raise InvalidRequest(
            f"Invalid 'limit': expected an integer from 1 to {maximum} for bucket_width={width_name}, "
            f"got '{text[:40]}'.",
            param="limit",
            code="invalid_value",
        )
    return int(text)


def _cursor(page: str, first: int, end: int, width: int) -> int:
    """The bucket a `next_page` cursor points at; it must lie in the query's range."""
    try:
        value = int(base64.urlsafe_b64decode(page.removeprefix(CURSOR).encode()).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = -1
    if not page.startswith(CURSOR) or value < first or value >= end or (value - first) % width:
        raise InvalidRequest(
            "Invalid 'page': not a next_page cursor of this query.", param="page", code="invalid_value"
        )
    return value


class UsageService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record_code_session(self, project: str, thread_id: str, session_key: str | None = None) -> None:
        """Counts one code interpreter session: one kernel (of one worker; a thread whose session moves to
        another worker has a new kernel, counted again). With a `session_key` (unique to that kernel, held
        by the one process that runs it) the count is idempotent: a retry after a commit whose answer was
        lost, or any second call for the same kernel within a day, finds the event and adds nothing (the
        lookup stays on the project/kind/time index)."""
        ref = thread_id if session_key is None else f"{thread_id}/{session_key}"

        def attempt() -> None:
            created_at = now()
            with self.db.session() as s:
                if session_key is not None:
                    seen = s.exec(
                        select(UsageEventRow.id).where(
                            UsageEventRow.project == project,
                            UsageEventRow.kind == CODE_SESSION,
                            UsageEventRow.created_at >= created_at - SESSION_KEY_WINDOW,
                            UsageEventRow.ref == ref,
                        )
                    ).first()
                    if seen is not None:
                        return
                s.add(UsageEventRow(project=project, kind=CODE_SESSION, created_at=created_at, ref=ref))

        retrying(attempt, what=f"counting the code interpreter session of {thread_id}")

    def code_interpreter_sessions(self, project: str, query: Mapping[str, Any]) -> dict[str, Any]:
        window = parse_window(query, now())
        bucket = _bucket_of(UsageEventRow.created_at, window)
        statement = (
            select(bucket, func.count())
            .where(
                UsageEventRow.project == project,
                UsageEventRow.kind == CODE_SESSION,
                UsageEventRow.created_at >= window.start,
                UsageEventRow.created_at < window.stop,
            )
            .group_by(bucket)
        )

        def result(row: Any) -> dict[str, Any]:
            return {
                "object": "organization.usage.code_interpreter_sessions.result",
                "num_sessions": row[1],
                "project_id": project,
            }

        return self._page(window, statement, result)

    def completions(self, project: str, query: Mapping[str, Any]) -> dict[str, Any]:
        """Tokens of runs and of responses (both APIs' model requests, in one query), with the engine's
        cached tokens (responses count them)."""
        window = parse_window(query, now())
        prompt = col(RunRow.usage)["prompt_tokens"].as_integer()
        runs = select(
            _bucket_of(RunRow.created_at, window),
            prompt.label("given"),
            col(RunRow.usage)["completion_tokens"].as_integer().label("made"),
            literal(0).label("cached"),
        ).where(
            RunRow.project == project,
            prompt.is_not(None),  # runs with usage: terminal ones
            RunRow.created_at >= window.start,
            RunRow.created_at < window.stop,
        )
        given = col(ResponseRow.usage)["input_tokens"].as_integer()
        responses = select(
            _bucket_of(ResponseRow.created_at, window),
            given.label("given"),
            col(ResponseRow.usage)["output_tokens"].as_integer().label("made"),
            col(ResponseRow.usage)[("input_tokens_details", "cached_tokens")].as_integer().label("cached"),
        ).where(
            ResponseRow.project == project,
            given.is_not(None),  # ended responses
            ResponseRow.created_at >= window.start,
            ResponseRow.created_at < window.stop,
        )
        both = union_all(runs, responses).subquery()
        statement = select(
            both.c.bucket,
            func.count(both.c.given),
            func.sum(both.c.given),
            func.sum(both.c.made),
            func.sum(both.c.cached),
        ).group_by(both.c.bucket)

        def result(row: Any) -> dict[str, Any]:
            return {
                "object": "organization.usage.completions.result",
                "input_tokens": int(row[2] or 0),
                "output_tokens": int(row[3] or 0),
                "input_cached_tokens": int(row[4] or 0),
                "num_model_requests": row[1],
                "project_id": project,
            }

        return self._page(window, statement, result)

    def _page(
        self, window: UsageWindow, statement: Any, result: Callable[[Any], dict[str, Any]]
    ) -> dict[str, Any]:
        with self.db.session() as s:
            counted = {int(row[0]): row for row in s.exec(statement).all()}
        buckets = []
        for index, start in enumerate(window.bucket_starts()):
            row = counted.get(index)
            buckets.append(
                {
                    "object": "bucket",
                    "start_time": start,
                    "end_time": start + window.width,
                    "results": [result(row)] if row is not None and row[1] else [],
                }
            )
        more = window.has_more
        return {"object": "page", "data": buckets, "has_more": more, "next_page": window.next_page()}


def _bucket_of(created_at: Any, window: UsageWindow) -> Any:
    """The bucket index of a row, computed by the database: (created_at - first) / width, an integer
    division (every counted row has created_at >= first)."""
    return ((col(created_at) - window.first) // window.width).label("bucket")
