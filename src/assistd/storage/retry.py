"""Transient failures of the shared services (the database restarting, a dropped connection, SQLite busy, a
Chroma server restarting) are retried with bounded exponential backoff before work is failed."""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

log = logging.getLogger("assistd.retry")

T = TypeVar("T")

# PostgreSQL SQLSTATE classes/codes that mean "try again": connection exceptions, shutting down, too many
# connections, serialization failure, deadlock, lock not available.
_PG_TRANSIENT_PREFIXES = ("08", "57P")
_PG_TRANSIENT_CODES = {"53300", "40001", "40P01", "55P03"}
_TEXT = (
    "database is locked",
    "server closed the connection",
    "connection refused",
    "could not connect",
    "terminating connection",
    "the database system is starting up",
    "the database system is shutting down",
    "connection reset",
    "connection timed out",
    "consuming input failed",
    "ssl syscall",
)


# Retries this process made, by what was retried ("database", "chroma"); metrics/ reads them at scrape time.
# Per process, not per Container: a retry is made deep below any object that knows its container.
RETRIES: collections.Counter[str] = collections.Counter()
_retries_lock = threading.Lock()


class TransientError(Exception):
    """Raised by a service wrapper for a failure of another component that is worth retrying."""


def is_transient(exc: BaseException) -> bool:
    """True for failures that go away by themselves: a restarting database or Chroma, a dropped connection."""
    if isinstance(exc, TransientError | DisconnectionError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if code and (code.startswith(_PG_TRANSIENT_PREFIXES) or code in _PG_TRANSIENT_CODES):
            return True
        if isinstance(exc, OperationalError):
            text = str(exc.orig).lower()
            return any(t in text for t in _TEXT)
        return False
    text = f"{type(exc).__name__} {exc}".lower()
    return any(t in text for t in _TEXT) or "connecterror" in text or "remoteprotocolerror" in text


def retrying(
    fn: Callable[[], T],
    *,
    what: str,
    attempts: int = 8,
    first_delay: float = 0.25,
    max_delay: float = 5.0,
    transient: Callable[[BaseException], bool] = is_transient,
    kind: str = "database",
) -> T:
    """Runs `fn` until it succeeds, retrying transient failures with jittered exponential backoff (about 20 s
    in all with the defaults); the last failure, or any other one, is raised. Each retry counts in
    RETRIES[kind]."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not transient(exc):
                raise
            log.warning(
                "%s failed (%s: %s); retry %d/%d in %.1fs",
                what,
                type(exc).__name__,
                exc,
                attempt,
                attempts - 1,
                delay,
            )
            with _retries_lock:
                RETRIES[kind] += 1
            time.sleep(delay * (0.75 + random.random() / 2))
            delay = min(max_delay, delay * 2)
    raise AssertionError("unreachable")
