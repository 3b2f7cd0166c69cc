"""Wake-ups between the processes sharing a PostgreSQL database: NOTIFY inside a transaction (delivered when
it commits) and one LISTEN connection per process that calls back per channel. On SQLite there is nothing to
listen to: every waiter also polls, so a missed or absent notification only costs latency."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from assistd.storage.db import Database

log = logging.getLogger("assistd.notify")

RUNS = "assistd_runs"  # a run is waiting for a worker, or was cancelled (payload: run id)
EVENTS = "assistd_events"  # a run has new stream events (payload: run id)
THREADS = "assistd_threads"  # a thread was deleted (payload: thread id)

Callback = Callable[[str], None]


def notify(session: Any, db: Database, channel: str, payload: str) -> None:
    """Queues a notification in `session`'s transaction (PostgreSQL only)."""
    if db.is_postgres:
        session.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})


_NOTIFY_MANY = text("SELECT pg_notify(:c, p) FROM unnest(CAST(:ps AS text[])) AS p")


def notify_many(session: Any, db: Database, channel: str, payloads: list[str]) -> None:
    """Queues a notification per payload in `session`'s transaction, in one statement (PostgreSQL only)."""
    if not db.is_postgres or not payloads:
        return
    if len(payloads) == 1:
        notify(session, db, channel, payloads[0])
    else:
        session.execute(_NOTIFY_MANY, {"c": channel, "ps": payloads})


class Listener:
    """One LISTEN connection per process; reconnects with backoff when the database restarts, and then calls
    every callback with an empty payload (what was notified meanwhile is unknown: waiters look again)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._callbacks: dict[str, list[Callback]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None

    def on(self, channel: str, callback: Callback) -> None:
        self._callbacks.setdefault(channel, []).append(callback)

    def start(self) -> None:
        if not self.db.is_postgres or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="db-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                conn.cancel_safe()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _dispatch(self, channel: str, payload: str) -> None:
        for callback in self._callbacks.get(channel, ()):
            try:
                callback(payload)
            except Exception:
                log.exception("notification callback for %s failed", channel)

    def _run(self) -> None:
        import psycopg

        delay = 0.25
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(_conninfo(self.db), autocommit=True) as conn:
                    self._conn = conn
                    for channel in self._callbacks:
                        conn.execute(f'LISTEN "{channel}"')
                    delay = 0.25
                    if not first:  # notifications sent while we were away are lost: everyone looks again
                        for channel in self._callbacks:
                            self._dispatch(channel, "")
                    first = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._dispatch(note.channel, note.payload)
            except Exception as exc:  # (a restart of the database: listen again)
                if self._stop.is_set():
                    return
                log.warning("database listener lost its connection (%s); reconnecting", exc)
                self._stop.wait(delay)
                delay = min(5.0, delay * 2)
            finally:
                self._conn = None


def _conninfo(db: Database) -> str:
    url = db.engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)
