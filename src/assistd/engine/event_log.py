"""DatabaseBus: run events through the database, for processes that share the work.

A state change's events are written in the same transaction as the change (RunStore); deltas are buffered
and written every few tens of milliseconds, fenced by the run's claim like every other write of the worker.
Each run's events are numbered from `runs.event_seq`, incremented under the run's row lock, so they commit
in sequence order. A stream on any node reads `seq > cursor` in order: nothing lost, nothing repeated. It is
woken by PostgreSQL NOTIFY (and by commits of this process), and polls as a fallback. A stream on the node
that writes its job's rows is handed them as they commit, when it has every event before them (`_handed`):
with several processes on one box, the stream is most often in the process that executes the job.

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
from contextlib import ExitStack, contextmanager
from typing import Any

from sqlalchemy import bindparam, delete, event, exists, func, insert, text, update
from sqlmodel import Session, select

from assistd.engine.claims import LostClaim
from assistd.engine.coalesce import merge_deltas
from assistd.engine.events import Event, EventBus
from assistd.engine.responses.events import KEEP_SECONDS, numbered
from assistd.engine.responses.tape import TERMINAL
from assistd.storage import nul
from assistd.storage.clock import db_now, db_time
from assistd.storage.db import Database, after_commit
from assistd.storage.notify import EVENTS, Listener, notify_many
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
Row = tuple[int, str, Any]  # an event as written: (its job's sequence number, name, data)


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
        self._handing = threading.Lock()  # held while rows are pushed to streams (`_push_rows`)
        self._everything = False
        self._wake = threading.Event()
        # Held around a transaction that locks several job rows; the ClaimQueue shares its own (see there).
        self.many_rows = threading.Lock()
        self._flush_now = threading.Event()  # a job's first delta: written at once, not at the next tick
        self._streaming: set[str] = set()  # jobs whose first delta was taken to be written
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
        self._flush_now.set()
        for thread in self._threads:
            thread.join(timeout=5)

    # --------------------------------------------------------------------------------------- writing
    @contextmanager
    def ordering(self, run_id: str) -> Iterator[None]:
        with self._stripes[self._stripe(run_id)]:
            yield

    def publish(self, run_id: str, name: str, data: Any) -> None:
        with self._deltas_lock:
            self._deltas.setdefault(run_id, []).append(Event(name, data))
            first = run_id not in self._streaming
            if first:
                self._streaming.add(run_id)
        if first:  # the stream's first token reaches its reader without waiting for the flush tick
            self._flush_now.set()

    def emit(self, s: Session, run_id: str, events: list[Event]) -> None:
        """Within `ordering(run_id)`: the run's buffered deltas first, then `events`, in `s`. If `s` rolls
        back (a transient failure: the write is retried), the deltas wait for the next try."""
        pending = self._take(run_id)
        if pending:
            event.listen(s, "after_rollback", lambda _s: self._restore(run_id, pending), once=True)
        written = self._insert(s, run_id, pending + events)
        if written:
            self._announce(s, {run_id: written})

    def discard(self, run_id: str) -> None:
        with self._deltas_lock:
            self._deltas.pop(run_id, None)
            self._streaming.discard(run_id)

    def _take(self, run_id: str) -> list[Event]:
        with self._deltas_lock:
            return self._deltas.pop(run_id, [])

    def _restore(self, run_id: str, events: list[Event]) -> None:
        """Puts events that were not written back in front of the run's buffer."""
        with self._deltas_lock:
            self._deltas[run_id] = events + self._deltas.get(run_id, [])

    def _insert(self, s: Session, run_id: str, events: list[Event]) -> list[Row]:
        """Writes the job's events, numbered after its last: the rows written, (seq, name, data) (none:
        nothing to write, or the job is gone)."""
        if not events:
            return []
        s.flush()  # a job row the session holds unwritten is numbered too (Core sees only what was sent)
        events = coalesced(run_id, events)
        n = len(events)
        job, log_table, key = _tables(run_id)
        c = s.connection()  # Core, statements built once: the ORM's bulk forms cost as much as the writes
        end = c.execute(_NUMBERING[job], {"job": run_id, "n": n}).scalar_one_or_none()
        if end is None:  # the job is gone (its thread was deleted, the response deleted)
            return []
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
        c.execute(_APPEND[log_table], rows)
        stored = nul.as_stored if self.db.is_postgres else None  # (NUL: as the other nodes read it back)
        return [(row["seq"], row["name"], stored(row["data"]) if stored else row["data"]) for row in rows]

    def _announce(self, s: Session, written: dict[str, list[Row]]) -> None:
        """The jobs have new events once `s` commits: other nodes are notified (one statement for all);
        this node's streams of them get them from here (`_handed`), and this node's reader is woken for
        those that could not."""
        if not written:
            return
        notify_many(s, self.db, EVENTS, list(written))
        after_commit(s, lambda: self._committed(written))

    def _committed(self, written: dict[str, list[Row]]) -> None:
        """After the commit (never raises: the transaction is over, and a retry would write it twice)."""
        for job_id, rows in written.items():
            try:
                handed = self._handed(job_id, rows)
            except Exception:
                log.exception("events of %s not handed to this node's streams: the reader reads them", job_id)
                handed = False
            if not handed:
                self._notified(job_id)

    def _handed(self, job_id: str, rows: list[Row]) -> bool:
        """Hands rows this process has just committed to the job's streams here that have every event
        before them, without reading them back (with several processes on one box, a stream is most often
        in the process that executes its job). True when no stream of the job is left without them; one that
        lacks earlier events (another process's, not read yet) gets these from the reader, in order."""
        subs = self.subscribers(job_id)
        if not subs:
            return False  # (the reader reads only what is subscribed: waking it costs nothing)
        first, last = rows[0][0], rows[-1][0]
        with self._handing:
            self._push_rows([sub for sub in subs if sub.cursor == first - 1], rows)
            return all(sub.cursor >= last for sub in subs)

    def flush_all(self) -> None:
        """Writes every job's buffered deltas: in one transaction, each job fenced by its claim, so that a
        flush costs one commit and one notification statement however many jobs stream (and a reading node
        is woken for all of them at once); a job whose claim was lost has its deltas dropped (`on_lost`). When
        that transaction fails, each job is tried on its own: one job's failing write never keeps the others'
        events from being written (a job row locked elsewhere, by a cancel, makes the flush wait for it)."""
        with self._deltas_lock:
            pending = sorted(self._deltas)
        if not pending:
            return
        lost: list[str] = []
        retry: list[str] = []
        # The jobs' orderings, taken in one order (two flushes never wait for each other crosswise), before
        # the transaction (a state change holds its ordering and then writes: never the other way round).
        with ExitStack() as held:
            for stripe in sorted({self._stripe(run_id) for run_id in pending}):
                held.enter_context(self._stripes[stripe])
            taken = [(run_id, events) for run_id in pending if (events := self._take(run_id))]
            try:
                with self.many_rows, self.db.session() as s:
                    written: dict[str, list[Row]] = {}
                    for run_id, events in taken:
                        try:
                            self._fence(s, run_id)
                        except LostClaim:
                            lost.append(run_id)
                            continue
                        if rows := self._insert(s, run_id, events):
                            written[run_id] = rows
                    self._announce(s, written)
            except Exception as exc:
                for run_id, events in taken:
                    if run_id not in lost:
                        self._restore(run_id, events)
                        retry.append(run_id)
                log.debug("events of %d jobs not written together (%s); each on its own", len(taken), exc)
        for run_id in lost:
            if self.on_lost is not None:
                self.on_lost(run_id)
        for run_id in retry:
            self._flush(run_id)

    def _fence(self, s: Session, run_id: str) -> None:
        if self.fence is not None:
            self.fence(s, run_id)

    def _stripe(self, run_id: str) -> int:
        return zlib.crc32(run_id.encode()) % _STRIPES

    def _flush(self, run_id: str) -> None:
        with self.ordering(run_id):
            events = self._take(run_id)
            if not events:
                return

            def write() -> None:
                with self.db.session() as s:
                    self._fence(s, run_id)
                    if rows := self._insert(s, run_id, events):
                        self._announce(s, {run_id: rows})

            try:
                write()
            except LostClaim:
                if self.on_lost is not None:
                    self.on_lost(run_id)
            except Exception as exc:  # an outage: they are written with the next flush (or the run's next
                self._restore(run_id, events)  # state change)
                log.debug("events of run %s not written yet: %s", run_id, exc)

    def _flush_loop(self) -> None:
        """Every FLUSH_SECONDS after the last flush, or at once for a job's first delta."""
        while not self._stop.is_set():
            self._flush_now.wait(FLUSH_SECONDS)
            self._flush_now.clear()
            if not self._stop.is_set():
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
        """Reads the new events of these jobs' streams, in one session however many there are: on
        PostgreSQL one query for all the jobs of a table, on SQLite a query each. A failure (a database
        outage) leaves the jobs not read yet to the next round."""
        if not run_ids:
            return
        read: set[str] = set()
        try:
            with self.db.session() as s:
                if self.db.is_postgres:
                    for table in (RunEventRow, ResponseEventRow):
                        jobs = [r for r in run_ids if _tables(r)[1] is table]
                        self._read_many(table, jobs, s)
                        read.update(jobs)
                else:
                    for run_id in run_ids:
                        self._read(run_id, s)
                        read.add(run_id)
        except Exception as exc:
            unread = [run_id for run_id in run_ids if run_id not in read]
            log.warning("reading events of %s failed: %s", unread[0] if unread else run_ids[0], exc)
            for run_id in unread:
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
        with self._handing:
            self._push_rows(subs, rows)
        if len(rows) == READ_LIMIT:
            self._notified(run_id)

    def _read_many(self, table: Any, run_ids: list[str], s: Session) -> None:
        """`_read` for several jobs of one table in one query (PostgreSQL): READ_LIMIT rows at most a job,
        in order; a job that met the limit is read again."""
        subs = {run_id: subs for run_id in run_ids if (subs := self.subscribers(run_id))}
        if not subs:
            return
        cursors = [min(sub.cursor for sub in job_subs) for job_subs in subs.values()]
        params = {"jobs": list(subs), "cursors": cursors, "limit": READ_LIMIT}
        rows = s.execute(_READS_MANY[table], params).all()
        by_job: dict[str, list[Any]] = {}
        for job, seq, name, data in rows:
            by_job.setdefault(job, []).append((seq, name, data))
        for job, job_rows in by_job.items():
            with self._handing:
                self._push_rows(subs[job], job_rows)
            if len(job_rows) == READ_LIMIT:  # more after them
                self._notified(job)

    def _push_rows(self, subs: list[Any], rows: list[Any]) -> None:
        """Pushes to each stream the rows after its cursor, in order. Callers hold `_handing`: the reader
        and a committing writer (`_handed`) never give a stream the same event twice, nor one out of order."""
        for seq, name, data in rows:
            event = Event(name, data)
            for sub in subs:
                if seq > sub.cursor:
                    sub.cursor = seq
                    try:
                        sub.push(event)
                    except RuntimeError:
                        self.unsubscribe(sub)


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


def _numbering(job: Any) -> Any:
    """Takes `n` numbers of the job's event sequence: the last one taken comes back (no row: the job is
    gone)."""
    t = job.__table__
    return (
        update(t)
        .where(t.c.id == bindparam("job"))
        .values(event_seq=t.c.event_seq + bindparam("n"))
        .returning(t.c.event_seq)
    )


_NUMBERING = {RunRow: _numbering(RunRow), ResponseRow: _numbering(ResponseRow)}
_APPEND = {table: insert(table.__table__) for table in (RunEventRow, ResponseEventRow)}


def _reading_many(table: Any, key: str) -> Any:
    """The query for several jobs' events, each after its own cursor and READ_LIMIT at most each
    (PostgreSQL: the jobs and cursors are two arrays), ordered by job and number, built once."""
    columns = table.__table__.c
    return text(
        f"SELECT c.job AS {key}, e.seq, e.name, e.data "
        "FROM unnest(CAST(:jobs AS text[]), CAST(:cursors AS bigint[])) AS c(job, after) "
        f"CROSS JOIN LATERAL (SELECT seq, name, data FROM {table.__tablename__} "
        f"WHERE {key} = c.job AND seq > c.after ORDER BY seq LIMIT :limit) AS e "
        "ORDER BY c.job, e.seq"
    ).columns(columns[key], columns.seq, columns.name, columns.data)


_READS_MANY = {
    RunEventRow: _reading_many(RunEventRow, "run_id"),
    ResponseEventRow: _reading_many(ResponseEventRow, "response_id"),
}


def _tables(job_id: str) -> tuple[Any, Any, str]:
    """The job's table, the table of its events, and the column naming the job there."""
    if job_id.startswith("resp_"):
        return ResponseRow, ResponseEventRow, "response_id"
    return RunRow, RunEventRow, "run_id"
