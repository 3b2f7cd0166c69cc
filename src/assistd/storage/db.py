"""The database: one engine per process, short sessions, schema created at start."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from assistd.storage import nul

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
        # A server's connections can die under a pool (a restart): each checkout is pinged first there. A
        # SQLite file has no server, and the ping would be one more statement in every transaction.
        self.engine: Engine = create_engine(
            url, connect_args=connect_args, pool_pre_ping=not self.is_sqlite, **extra
        )
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
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


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
