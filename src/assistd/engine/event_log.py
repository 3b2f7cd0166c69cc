"""DatabaseBus: run events through the database, for processes that share the work.

A state change's events are written in the same transaction as the change (RunStore); deltas are buffered
and written every few tens of milliseconds, fenced by the run's claim like every other write of the worker.
Each run's events are numbered from `runs.event_seq`, incremented under the run's row lock, so they commit
in sequence order. A stream on any node reads `seq > cursor` in order: nothing lost, nothing repeated. It is
woken by PostgreSQL NOTIFY (and by commits of this process), and polls as a fallback.

Deltas are coalesced before they are written: consecutive deltas that only add text to the same place become
one row (a run's: engine/coalesce.py `merge_deltas`; a response's: `merge_response_deltas` below, before they
are numbered, so their numbers stay contiguous and every event a stream delivers keeps its number). A
streaming job thus writes about one delta row per flush (FLUSH_SECONDS), whatever its token rate; nothing is
dropped, reordered, or merged across another event."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import bindparam, delete, event, exists, func, insert, update
from sqlmodel import Session, select

from assistd.engine.coalesce import merge_deltas
from assistd.engine.events import Event, EventBus
from assistd.engine.responses.events import KEEP_SECONDS, numbered
from assistd.engine.responses.tape import TERMINAL
from assistd.storage.clock import db_now, db_time
from assistd.storage.db import Database, after_commit
from assistd.storage.notify import EVENTS, Listener, notify
from assistd.storage.responses import ResponseEventRow, ResponseRow
from assistd.storage.run_events import RunEventRow
from assistd.storage.runs import RunRow

log = logging.getLogger("assistd.events")

FLUSH_SECONDS = 0.05
# A run's events are deleted this long after they were written: streams read them within moments, and a
# run's stream cannot be resumed. (A response's: KEEP_SECONDS after it ended, as streams resume from them.)
RUN_EVENTS_KEEP_SECONDS = 900
_STRIPES = 64
READ_LIMIT = 2000  # events read for a job's streams at once


class DatabaseBus(EventBus):
    def __init__(self, db: Database, listener: Listener | None = None, poll_seconds: float | None = None):
        super().__init__()
        self.db = db
        self.poll_seconds = poll_seconds or (1.0 if db.is_postgres else 0.1)
        # Set by RunStore: checks the run's claim in a session (raises LostClaim), and is told of a loss.
        self.fence: Callable[[Session, str], None] | None = None
        self.on_lost: Callable[[str], None] | None = None
        self._deltas: dict[str, list[Event]] = {}
        self._deltas_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._dirty: set[str] = set()
        self._everything = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if listener is not None:
            listener.on(EVENTS, self._notified)

    # ------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        for target, name in ((self._flush_loop, "events-flush"), (self._read_loop, "events-read")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.flush_all()
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)

    # --------------------------------------------------------------------------------------- writing
    @contextmanager
    def ordering(self, run_id: str) -> Iterator[None]:
        with self._stripes[zlib.crc32(run_id.encode()) % _STRIPES]:
            yield

    def publish(self, run_id: str, name: str, data: Any) -> None:
        with self._deltas_lock:
            self._deltas.setdefault(run_id, []).append(Event(name, data))

    def emit(self, s: Session, run_id: str, events: list[Event]) -> None:
        """Within `ordering(run_id)`: the run's buffered deltas first, then `events`, in `s`. If `s` rolls
        back (a transient failure: the write is retried), the deltas wait for the next try."""
        pending = self._take(run_id)
        if pending:
            event.listen(s, "after_rollback", lambda _s: self._restore(run_id, pending), once=True)
        self._insert(s, run_id, pending + events)

    def discard(self, run_id: str) -> None:
        self._take(run_id)

    def _take(self, run_id: str) -> list[Event]:
        with self._deltas_lock:
            return self._deltas.pop(run_id, [])

    def _restore(self, run_id: str, events: list[Event]) -> None:
        """Puts events that were not written back in front of the run's buffer."""
        with self._deltas_lock:
            self._deltas[run_id] = events + self._deltas.get(run_id, [])

    def _insert(self, s: Session, run_id: str, events: list[Event]) -> None:
        if not events:
            return
        events = coalesced(run_id, events)
        n = len(events)
        job, log_table, key = _tables(run_id)
        end = s.execute(
            update(job).where(job.id == run_id).values(event_seq=job.event_seq + n).returning(job.event_seq)
        ).scalar_one_or_none()
        if end is None:  # the job is gone (its thread was deleted, the response deleted)
            return
        stamp = db_time()
        rows = [
            {
                key: run_id,
                "seq": end - n + 1 + i,
                "name": e.name,
                "data": numbered(e.payload(), end - n + i),  # a response's events: from 0
                "created_at": stamp,
            }
            for i, e in enumerate(events)
        ]
        s.execute(insert(log_table), rows)
        notify(s, self.db, EVENTS, run_id)
        after_commit(s, lambda: self._notified(run_id))

    def flush_all(self) -> None:
        with self._deltas_lock:
            pending = list(self._deltas)
        for run_id in pending:
            self._flush(run_id)

    def _flush(self, run_id: str) -> None:
        with self.ordering(run_id):
            events = self._take(run_id)
            if not events:
                return

            def write() -> None:
                with self.db.session() as s:
                    if self.fence is not None:
                        self.fence(s, run_id)
                    self._insert(s, run_id, events)

            try:
                write()
            except Exception as exc:
                from assistd.engine.claims import LostClaim

                if isinstance(exc, LostClaim):
                    if self.on_lost is not None:
                        self.on_lost(run_id)
                else:  # an outage: they are written with the next flush (or the run's next state change)
                    self._restore(run_id, events)
                    log.debug("events of run %s not written yet: %s", run_id, exc)

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self.flush_all()

    def prune(self) -> int:
        """Deletes run events older than RUN_EVENTS_KEEP_SECONDS, and the events of responses that ended
        with no event for KEEP_SECONDS (a running response's are kept however old; a deleted response's
        go with its row, by cascade). How many rows it deleted."""
        with self.db.session() as s:
            runs = s.execute(
                delete(RunEventRow).where(RunEventRow.created_at < db_now() - RUN_EVENTS_KEEP_SECONDS)  # type: ignore[arg-type]
            )
            horizon = db_now() - KEEP_SECONDS
            older, newer = (ResponseEventRow.__table__.alias(n) for n in ("older", "newer"))  # type: ignore[attr-defined]
            ended = select(ResponseRow.id).where(
                ResponseRow.status.in_(TERMINAL),  # type: ignore[attr-defined]
                ResponseRow.id.in_(select(older.c.response_id).where(older.c.created_at < horizon)),  # type: ignore[attr-defined]
                ~exists().where(newer.c.response_id == ResponseRow.id, newer.c.created_at >= horizon),
            )
            gone = delete(ResponseEventRow).where(ResponseEventRow.response_id.in_(ended))  # type: ignore[attr-defined]
            responses = s.execute(gone)
        return (runs.rowcount or 0) + (responses.rowcount or 0)

    def last_seq(self, job_id: str) -> int | None:
        """The sequence number of the job's last stored event as its stream counts it (a response's from 0,
        a run's from 1); None: none is kept."""
        _, table, key = _tables(job_id)
        with self.db.session() as s:
            last = s.exec(select(func.max(table.seq)).where(getattr(table, key) == job_id)).one()
        if last is None:
            return None
        return last - 1 if table is ResponseEventRow else last

    # --------------------------------------------------------------------------------------- reading
    def _notified(self, run_id: str) -> None:
        with self._deltas_lock:
            if run_id:
                self._dirty.add(run_id)
            else:
                self._everything = True
        self._wake.set()

    def subscribe(self, run_id: str, loop: Any, after: int = 0) -> Any:
        sub = super().subscribe(run_id, loop, after)
        self._notified(run_id)  # what was written before it subscribed is read at once
        return sub

    def _read_loop(self) -> None:
        last_sweep = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            now = time.monotonic()
            sweep = now - last_sweep >= self.poll_seconds  # every stream is read at least this often
            if sweep:
                last_sweep = now
            with self._deltas_lock:
                dirty, self._dirty = self._dirty, set()
                everything, self._everything = self._everything or sweep, False
            with self._lock:
                subscribed = list(self._subs)
            self._read_all(subscribed if everything else [r for r in subscribed if r in dirty])

    def _read_all(self, run_ids: list[str]) -> None:
        """Reads the new events of these jobs' streams, in one session however many there are (a query each).
        A failure (a database outage) leaves the jobs not read yet to the next round."""
        if not run_ids:
            return
        done = 0
        try:
            with self.db.session() as s:
                for run_id in run_ids:
                    self._read(run_id, s)
                    done += 1
        except Exception as exc:
            log.warning("reading events of %s failed: %s", run_ids[min(done, len(run_ids) - 1)], exc)
            for run_id in run_ids[done:]:
                self._notified(run_id)

    def _read(self, run_id: str, s: Session | None = None) -> None:
        """Pushes the job's events after its streams' cursors to them (READ_LIMIT at most: then again)."""
        subs = self.subscribers(run_id)
        if not subs:
            return
        cursor = min(sub.cursor for sub in subs)
        _, table, _ = _tables(run_id)
        if s is None:
            with self.db.session() as own:
                rows = own.execute(_READS[table], {"job": run_id, "cursor": cursor}).all()
        else:
            rows = s.execute(_READS[table], {"job": run_id, "cursor": cursor}).all()
        for seq, name, data in rows:
            event = Event(name, data)
            for sub in subs:
                if seq > sub.cursor:
                    sub.cursor = seq
                    try:
                        sub.push(event)
                    except RuntimeError:
                        self.unsubscribe(sub)
        if len(rows) == READ_LIMIT:
            self._notified(run_id)


def coalesced(job_id: str, events: list[Event]) -> list[Event]:
    """The job's events as they are written: consecutive deltas to the same place merged (a run's by
    engine/coalesce.py, a response's by `merge_response_deltas`). The events given are not modified."""
    if len(events) < 2:
        return events
    return merge_response_deltas(events) if job_id.startswith("resp_") else merge_deltas(events)


# A response's deltas that only add text: the event's type -> the fields that say where the text goes. Each
# carries `delta` (a string; the SDK's accumulation and a client's concatenate them) and, for output text,
# `logprobs` (a list: the merged delta's is its parts' in order).
RESPONSE_DELTAS: dict[str, tuple[str, ...]] = {
    "response.output_text.delta": ("item_id", "output_index", "content_index"),
    "response.reasoning_text.delta": ("item_id", "output_index", "content_index"),
    "response.function_call_arguments.delta": ("item_id", "output_index"),
    "response.code_interpreter_call_code.delta": ("item_id", "output_index"),
}
_LISTS = {"response.output_text.delta": ("logprobs",)}
_RESPONSE_DELTA_KEYS = {
    name: frozenset({"type", "sequence_number", "delta", *place, *_LISTS.get(name, ())})
    for name, place in RESPONSE_DELTAS.items()
}


def response_merge_key(event: Event) -> tuple[Any, ...] | None:
    """Where a response's delta event adds its text, when it is one that may merge (exactly the fields its
    type has, not yet numbered, a string `delta`, list `logprobs`); else None."""
    place = RESPONSE_DELTAS.get(event.name)
    data = event.data
    if place is None or type(data) is not dict or data.keys() != _RESPONSE_DELTA_KEYS[event.name]:
        return None
    if data["type"] != event.name or data["sequence_number"] is not None or type(data["delta"]) is not str:
        return None
    if any(type(data[key]) is not list for key in _LISTS.get(event.name, ())):
        return None
    values = tuple(data[key] for key in place)
    if any(type(v) not in (str, int) for v in values):
        return None
    return (event.name, *values)


def merge_response_deltas(events: list[Event]) -> list[Event]:
    """A response's events in order, each run of consecutive deltas to the same place (`response_merge_key`)
    merged into one event: the first's fields, the joined `delta`, the concatenated `logprobs`. Everything
    else as it was; the events given are not modified."""
    out: list[Event] = []
    group: list[Event] = []
    group_key: tuple[Any, ...] | None = None
    for ev in events:
        key = response_merge_key(ev)
        if key is not None and key == group_key:
            group.append(ev)
            continue
        out.extend(_joined(group))
        group, group_key = ([ev], key) if key is not None else ([], None)
        if key is None:
            out.append(ev)
    out.extend(_joined(group))
    return out


def _joined(group: list[Event]) -> list[Event]:
    if len(group) < 2:
        return group
    first = group[0]
    data = {**first.data, "delta": "".join(e.data["delta"] for e in group)}
    for key in _LISTS.get(first.name, ()):
        data[key] = [item for e in group for item in e.data[key]]
    return [Event(first.name, data)]


def _reading(table: Any, key: str) -> Any:
    """The query for a job's events after a cursor, built once (the job and the cursor are parameters)."""
    return (
        select(table.seq, table.name, table.data)
        .where(getattr(table, key) == bindparam("job"), table.seq > bindparam("cursor"))
        .order_by(table.seq)
        .limit(READ_LIMIT)
    )


_READS = {
    RunEventRow: _reading(RunEventRow, "run_id"),
    ResponseEventRow: _reading(ResponseEventRow, "response_id"),
}


def _tables(job_id: str) -> tuple[Any, Any, str]:
    """The job's table, the table of its events, and the column naming the job there."""
    if job_id.startswith("resp_"):
        return ResponseRow, ResponseEventRow, "response_id"
    return RunRow, RunEventRow, "run_id"
