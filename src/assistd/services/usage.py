"""Usage figures per project, in the shape of OpenAI's organization usage API: completion tokens of runs
and code interpreter sessions (the hosted API billed per session), in time buckets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import select

from assistd.errors import InvalidRequest
from assistd.ids import now
from assistd.storage.db import Database
from assistd.storage.runs import RunRow
from assistd.storage.usage import UsageEventRow

CODE_SESSION = "code_interpreter_session"
BUCKETS = {"1m": 60, "1h": 3600, "1d": 86400}
DEFAULT_LIMITS = {"1m": 60, "1h": 24, "1d": 7}


class UsageService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record_code_session(self, project: str, thread_id: str) -> None:
        with self.db.session() as s:
            s.add(UsageEventRow(project=project, kind=CODE_SESSION, created_at=now(), ref=thread_id))

    def code_interpreter_sessions(self, project: str, query: dict[str, Any]) -> dict[str, Any]:
        def count(start: int, end: int) -> dict[str, Any] | None:
            with self.db.session() as s:
                n = s.exec(
                    select(func.count())
                    .select_from(UsageEventRow)
                    .where(
                        UsageEventRow.project == project,
                        UsageEventRow.kind == CODE_SESSION,
                        UsageEventRow.created_at >= start,
                        UsageEventRow.created_at < end,
                    )
                ).one()
            return (
                {
                    "object": "organization.usage.code_interpreter_sessions.result",
                    "num_sessions": n,
                    "project_id": project,
                }
                if n
                else None
            )

        return _page(query, count)

    def completions(self, project: str, query: dict[str, Any]) -> dict[str, Any]:
        def count(start: int, end: int) -> dict[str, Any] | None:
            with self.db.session() as s:
                rows = s.exec(
                    select(RunRow.usage).where(
                        RunRow.project == project,
                        RunRow.usage != None,  # noqa: E711
                        RunRow.created_at >= start,
                        RunRow.created_at < end,
                    )
                ).all()
            if not rows:
                return None
            return {
                "object": "organization.usage.completions.result",
                "input_tokens": sum(u.get("prompt_tokens", 0) for u in rows),
                "output_tokens": sum(u.get("completion_tokens", 0) for u in rows),
                "input_cached_tokens": 0,
                "num_model_requests": len(rows),
                "project_id": project,
            }

        return _page(query, count)


def _page(query: dict[str, Any], count: Any) -> dict[str, Any]:
    start, end, width, limit = _window(query)
    buckets = []
    t = start - start % width
    while t < end and len(buckets) < limit:
        result = count(max(t, start), min(t + width, end))
        buckets.append(
            {
                "object": "bucket",
                "start_time": t,
                "end_time": t + width,
                "results": [result] if result else [],
            }
        )
        t += width
    return {"object": "page", "data": buckets, "has_more": t < end, "next_page": None}


def _window(query: dict[str, Any]) -> tuple[int, int, int, int]:
    width_name = query.get("bucket_width") or "1d"
    if width_name not in BUCKETS:
        raise InvalidRequest("Invalid 'bucket_width': expected '1m', '1h' or '1d'.", param="bucket_width")
    width = BUCKETS[width_name]
    try:
        start = int(query["start_time"])
        end = int(query.get("end_time") or now() + 1)
        limit = int(query.get("limit") or DEFAULT_LIMITS[width_name])
    except KeyError:
        raise InvalidRequest("Missing required parameter: 'start_time'.", param="start_time") from None
    except ValueError:
        raise InvalidRequest("start_time, end_time and limit are integers.", param="start_time") from None
    if end <= start:
        raise InvalidRequest("'end_time' must be after 'start_time'.", param="end_time")
    return start, end, width, max(1, limit)
