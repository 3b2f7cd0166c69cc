"""The database: one engine per process, short sessions, schema created at start."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from assistd.storage import nul

log = logging.getLogger("assistd.db")

PG_IDLE_IN_TX_MS = 5000
PG_LOCK_TIMEOUT_MS = 5000


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.is_postgres = parsed.get_backend_name() == "postgresql"
        connect_args: dict = {}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            connect_args = {"check_same_thread": False, "timeout": 30}
        if self.is_postgres:
            # A process paused inside a transaction (SIGSTOP, a VM freeze) must not hold its row locks for as
            # long as it sleeps: the server ends such a session, and a statement that waits for a lock gives
            # up (a transient error: retried), so other workers can take its runs over.
            connect_args = {
                "options": f"-c idle_in_transaction_session_timeout={PG_IDLE_IN_TX_MS} "
                f"-c lock_timeout={PG_LOCK_TIMEOUT_MS}"
            }
        extra: dict = {"json_serializer": nul.json_serializer} if self.is_postgres else {}
        extra["json_deserializer"] = json_loads  # every JSON column read (a run's row has a dozen)
        # A server's connections can die under a pool (a restart): each checkout is pinged first there. A
        # SQLite file has no server, and the ping would be one more statement in every transaction.
        self.engine: Engine = create_engine(
            url, connect_args=connect_args, pool_pre_ping=not self.is_sqlite, **extra
        )
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            self.writers = SQLiteWriters()
            self.writers.install(self.engine)
        if self.is_postgres:
            nul.install(self.engine)  # PostgreSQL text cannot hold U+0000

    def create_schema(self) -> None:
        """Upgrades the schema to the newest migration, under a lock (see storage.migrate)."""
        from assistd.storage import migrate

        migrate.upgrade(self)

    def now(self) -> float:
        """The database's current Unix time: leases and expiry use it, never a node's own clock."""
        from assistd.storage.clock import read_now

        with self.session() as s:
            return read_now(s)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error: no half-written rows."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def after_commit(s: Session, action: Callable[[], Any]) -> None:
    """Runs `action` once the caller's transaction commits (never when it rolls back)."""
    event.listen(s, "after_commit", lambda _session: action(), once=True)


class SQLiteWriters:
    """One writing transaction at a time among this process's threads, handed over at once.

    SQLite has one writer per database file; a connection that finds the write lock taken waits in SQLite's
    busy handler, which sleeps 1, 2, 5, 10 ... 100 ms between tries. With a run's few writes before its first
    token and a dozen runs starting together, those sleeps became most of their time to first token (issue 20:
    16 runs at once overlapped 3 at a time on the engine). Here a connection takes a process-wide lock at its
    transaction's first write statement (where SQLite takes its write lock: the driver begins a transaction
    there) and gives it up as it commits or rolls back, so threads wait on a Python lock, woken as soon as it
    is free; other processes on the same file still meet SQLite's own lock. Reads are not held back (WAL:
    readers never wait for the writer). A write this does not recognise (one behind a CTE) meets SQLite's lock
    as before, and a wait past WAIT_SECONDS goes on without the lock: this only spares the sleeps, correctness
    never depends on it. Re-entrant per thread (a write session inside another), released by whichever thread
    ends it."""

    WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
    WAIT_SECONDS = 30.0  # as SQLite's busy timeout
    KEY = "assistd_writer"  # set in a connection's info while it holds the lock

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = threading.Lock()
        self._owner: int | None = None  # the thread whose connections hold it
        self._holds = 0  # ... how many of them

    def install(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", lambda conn: conn.invalidated or self._release(conn.info))
        # a connection given back without either (the pool's reset, an invalidated one): released there
        event.listen(engine, "checkin", lambda _dbapi, record: self._release(record.info))

    def _commit(self, conn) -> None:
        """The `commit` event comes before the driver's commit: committing here first, the lock goes when
        SQLite's does (not later, after the session's after-commit work, which may call Chroma; not
        earlier, when the next writer would meet SQLite's lock and sleep). The driver's commit then has
        nothing to do."""
        if self.KEY in conn.info:
            conn.connection.dbapi_connection.commit()
            self._release(conn.info)

    def _before(self, conn, _cursor, statement: str, _parameters, _context, _many) -> None:
        if self.KEY in conn.info or not statement.lstrip()[:7].upper().startswith(self.WRITES):
            return
        me = threading.get_ident()
        with self._state:
            mine = self._owner == me
            if mine:
                self._holds += 1
        if not mine:
            if not self._lock.acquire(timeout=self.WAIT_SECONDS):
                log.warning("a write waited %.0f s for this process's writer: it goes on", self.WAIT_SECONDS)
                return
            with self._state:
                self._owner, self._holds = me, 1
        conn.info[self.KEY] = True

    def _release(self, info: dict) -> None:
        if not info.pop(self.KEY, None):
            return
        with self._state:
            self._holds -= 1
            if self._holds:
                return
            self._owner = None
        self._lock.release()


def json_loads(text: str | bytes) -> Any:
    """A JSON column's value: orjson (several times the standard library's speed), or the standard library
    for what orjson refuses and it reads (NaN and Infinity, integers past 64 bits, lone surrogates)."""
    if (_LONG_DIGITS_B if isinstance(text, bytes) else _LONG_DIGITS).search(text):
        return json.loads(text)  # orjson reads an integer past 64 bits as a float: a schema's bound changes
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_B = re.compile(rb"\d{19}")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
