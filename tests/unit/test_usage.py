"""The usage service on a real SQLite database: the hosted API's query rules, buckets counted by one grouped
query (whatever the range), and figures equal to a count done by hand."""

from __future__ import annotations

import random
import sqlite3
from contextlib import contextmanager

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from assistd.errors import InvalidRequest
from assistd.services.usage import CODE_SESSION, UsageService
from assistd.storage.db import Database
from assistd.storage.responses import ResponseRow
from assistd.storage.runs import RunRow
from assistd.storage.threads import ThreadRow
from assistd.storage.usage import UsageEventRow

DAY = 86400
T0 = 1_700_000_000 - 1_700_000_000 % DAY  # a midnight


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    database.create_schema()
    yield database
    database.dispose()


def add_runs(db: Database, project: str, runs: list[tuple[int, dict | None]]) -> None:
    with db.session() as s:
        if s.get(ThreadRow, f"thread_{project}") is None:
            s.add(ThreadRow(id=f"thread_{project}", project=project, created_at=T0))
            s.flush()
        for i, (created_at, usage) in enumerate(runs):
            s.add(
                RunRow(
                    id=f"run_{project}_{i}",
                    project=project,
                    thread_id=f"thread_{project}",
                    assistant_id="asst_x",
                    created_at=created_at,
                    model="m",
                    usage=usage,
                    status="completed" if usage else "failed",  # ended runs: one thread holds them all
                )
            )


def add_responses(db: Database, project: str, responses: list[tuple[int, dict | None]]) -> None:
    with db.session() as s:
        for i, (created_at, usage) in enumerate(responses):
            s.add(
                ResponseRow(
                    id=f"resp_{project}_{i}",
                    project=project,
                    created_at=created_at,
                    model="m",
                    usage=usage,
                    status="completed" if usage else "in_progress",
                )
            )


def add_sessions(db: Database, project: str, times: list[int]) -> None:
    with db.session() as s:
        for t in times:
            s.add(UsageEventRow(project=project, kind=CODE_SESSION, created_at=t, ref="thread_x"))


class StatementCounter:
    def __init__(self, db: Database) -> None:
        self.count = 0
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args) -> None:
        self.count += 1


def window(start: int, end: int | None = None, width: str = "1m", limit: int | None = None) -> dict:
    query = {"start_time": str(start), "bucket_width": width}
    if end is not None:
        query["end_time"] = str(end)
    if limit is not None:
        query["limit"] = str(limit)
    return query


def test_completions_buckets_match_a_count_by_hand(db):
    rng = random.Random(7)
    runs = []
    for _ in range(300):
        usage = {"prompt_tokens": rng.randint(1, 500), "completion_tokens": rng.randint(1, 50)}
        runs.append((T0 + rng.randint(0, 3 * 3600), usage if rng.random() < 0.8 else None))
    add_runs(db, "p", runs)
    add_runs(db, "other", [(T0 + 130, {"prompt_tokens": 999, "completion_tokens": 999})])
    start, end = T0 + 125, T0 + 4 * 3600  # start off a boundary: the first bucket counts from start_time
    page = UsageService(db).completions("p", window(start, end, limit=1440))
    assert page["object"] == "page" and not page["has_more"] and page["next_page"] is None
    assert page["data"][0]["start_time"] == T0 + 120 and page["data"][-1]["end_time"] == end
    assert len(page["data"]) == (end - (T0 + 120)) // 60
    counted = 0
    for bucket in page["data"]:
        assert bucket["object"] == "bucket" and bucket["end_time"] == bucket["start_time"] + 60
        lo, hi = max(bucket["start_time"], start), bucket["end_time"]
        inside = [u for t, u in runs if lo <= t < hi and u is not None]
        if not inside:
            assert bucket["results"] == []
            continue
        (result,) = bucket["results"]
        assert result["object"] == "organization.usage.completions.result"
        assert result["num_model_requests"] == len(inside)
        assert result["input_tokens"] == sum(u["prompt_tokens"] for u in inside)
        assert result["output_tokens"] == sum(u["completion_tokens"] for u in inside)
        assert result["project_id"] == "p"
        counted += len(inside)
    assert counted == len([u for t, u in runs if t >= start and u is not None]) > 100


def test_sessions_buckets_and_projects(db):
    add_sessions(db, "p", [T0 + 10, T0 + 3599, T0 + 3600, T0 + 5 * 3600])
    add_sessions(db, "q", [T0 + 20])
    page = UsageService(db).code_interpreter_sessions("p", window(T0, T0 + DAY, "1h"))
    assert len(page["data"]) == 24 and not page["has_more"]
    sessions = [sum(r["num_sessions"] for r in b["results"]) for b in page["data"]]
    assert sessions[:6] == [2, 1, 0, 0, 0, 1] and sum(sessions) == 4
    assert page["data"][0]["results"][0]["object"] == "organization.usage.code_interpreter_sessions.result"


def code_sessions(db: Database) -> list[UsageEventRow]:
    with db.session() as s:
        return list(s.exec(select(UsageEventRow).where(UsageEventRow.kind == CODE_SESSION)).all())


def test_a_code_session_is_counted_once_per_kernel_key(db):
    usage = UsageService(db)
    usage.record_code_session("p", "thread_1", "kernel-1")
    usage.record_code_session("p", "thread_1", "kernel-1")  # the same kernel again: nothing added
    UsageService(db).record_code_session("p", "thread_1", "kernel-2")  # the thread's next kernel
    assert sorted(e.ref for e in code_sessions(db)) == ["thread_1/kernel-1", "thread_1/kernel-2"]


def test_a_commit_whose_answer_was_lost_is_not_counted_twice(db, monkeypatch):
    """The insert commits, then the client sees a transient error (the connection dropped before the answer)
    and retries the whole unit: the retry finds the session's key and adds nothing."""
    real_session = db.session
    failures = []

    @contextmanager
    def answer_lost_once():
        with real_session() as s:
            yield s
        if not failures:  # committed: only the answer is lost
            failures.append(1)
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(db, "session", answer_lost_once)
    UsageService(db).record_code_session("p", "thread_1", "kernel-1")
    assert failures == [1]
    assert [e.ref for e in code_sessions(db)] == ["thread_1/kernel-1"]


def test_completions_count_responses_beside_runs(db):
    add_runs(db, "p", [(T0 + 10, {"prompt_tokens": 100, "completion_tokens": 10})])
    usage = {
        "input_tokens": 50,
        "input_tokens_details": {"cached_tokens": 40},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 55,
    }
    add_responses(db, "p", [(T0 + 20, usage), (T0 + 30, None), (T0 + 70, usage)])
    add_responses(db, "other", [(T0 + 20, usage)])
    page = UsageService(db).completions("p", window(T0, T0 + 120))
    first, second = (bucket["results"] for bucket in page["data"])
    assert first == [
        {
            "object": "organization.usage.completions.result",
            "input_tokens": 150,
            "output_tokens": 15,
            "input_cached_tokens": 40,
            "num_model_requests": 2,  # the run and the ended response
            "project_id": "p",
        }
    ]
    assert second[0]["input_tokens"] == 50 and second[0]["input_cached_tokens"] == 40


@pytest.mark.parametrize(("width", "limit"), [("1m", 1440), ("1h", 168), ("1d", 31)])
def test_a_page_is_one_query_whatever_its_size(db, width, limit):
    add_runs(db, "p", [(T0 + i * 3000, {"prompt_tokens": 1, "completion_tokens": 1}) for i in range(50)])
    add_sessions(db, "p", [T0 + i * 3000 for i in range(50)])
    service = UsageService(db)
    counter = StatementCounter(db)
    page = service.completions("p", window(T0, T0 + 400 * DAY, width, limit))
    assert len(page["data"]) == limit and page["has_more"]
    assert counter.count == 1
    page = service.code_interpreter_sessions("p", window(T0, T0 + 400 * DAY, width, limit))
    assert len(page["data"]) == limit and counter.count == 2


def test_next_page_continues_where_the_page_stopped(db):
    times = [T0 + i * 7200 for i in range(40)]  # 80 hours of sessions, one every two hours
    add_sessions(db, "p", times)
    service = UsageService(db)
    query = window(T0, T0 + 80 * 3600, "1h", 30)
    seen, pages = [], 0
    while pages < 10:
        page = service.code_interpreter_sessions("p", query)
        pages += 1
        seen += [b["start_time"] for b in page["data"] if b["results"]]
        if not page["has_more"]:
            assert page["next_page"] is None
            break
        assert page["next_page"]
        query = {**query, "page": page["next_page"]}
    assert pages == 3 and seen == times


def test_defaults_follow_the_hosted_api(db):
    service = UsageService(db)
    assert len(service.completions("p", {"start_time": str(T0)})["data"]) == 7  # 1d, 7 buckets
    assert len(service.completions("p", window(T0, width="1h"))["data"]) == 24
    assert len(service.completions("p", window(T0, width="1m"))["data"]) == 60


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({}, "start_time"),
        ({"start_time": ""}, "start_time"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"start_time": "-5"}, "start_time"),
        ({"start_time": "1.5"}, "start_time"),
        ({"start_time": "9" * 400}, "start_time"),
        ({"start_time": str(T0), "end_time": "later"}, "end_time"),
        ({"start_time": str(T0), "end_time": str(T0)}, "end_time"),
        ({"start_time": str(T0), "end_time": str(T0 - 60)}, "end_time"),
        ({"start_time": str(T0), "bucket_width": "1w"}, "bucket_width"),
        ({"start_time": str(T0), "bucket_width": "1m", "limit": "1441"}, "limit"),
        ({"start_time": str(T0), "bucket_width": "1m", "limit": "1000000000"}, "limit"),
        ({"start_time": str(T0), "bucket_width": "1h", "limit": "169"}, "limit"),
        ({"start_time": str(T0), "limit": "32"}, "limit"),
        ({"start_time": str(T0), "limit": "0"}, "limit"),
        ({"start_time": str(T0), "limit": "-1"}, "limit"),
        ({"start_time": str(T0), "limit": "ten"}, "limit"),
        ({"start_time": str(T0), "page": "page_bm9wZQ=="}, "page"),
        ({"start_time": str(T0), "page": "anything"}, "page"),
        ({"start_time": str(T0), "end_time": str(T0 + DAY), "page": "page_" + "MA=="}, "page"),
    ],
)
def test_bad_queries_are_400_naming_the_param(db, query, param):
    with pytest.raises(InvalidRequest) as info:
        UsageService(db).completions("p", query)
    assert info.value.param == param
    with pytest.raises(InvalidRequest):
        UsageService(db).code_interpreter_sessions("p", query)
