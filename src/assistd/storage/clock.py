"""The database's clock: leases and expiry compare against the time of the one database every node shares,
never against a node's own clock (nodes drift; a paused process's clock means nothing to the others)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Float, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement


class db_now(FunctionElement):  # a SQL function: lower case, like func.now()
    """The database's current Unix time in seconds (float), as a SQL expression."""

    type = Float()
    inherit_cache = True


@compiles(db_now)
def _generic(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "(julianday('now') - 2440587.5) * 86400.0"


@compiles(db_now, "postgresql")
def _postgres(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "extract(epoch from clock_timestamp())::float8"


_offset = 0.0  # the database's clock minus this node's, as last read


def read_now(session: Any) -> float:
    """The database's current time, read in `session` (and this node's offset to it, for `db_time`). SQLite's
    clock is this machine's (`julianday('now')` is the system time, read by the library in this process): no
    query, one statement less in every run's creation (issue 20)."""
    global _offset
    if session.get_bind().dialect.name == "sqlite":
        return time.time()
    value = float(session.execute(select(db_now())).scalar_one())
    _offset = value - time.time()
    return value


def db_time() -> float:
    """The database's time as of this node's clock corrected by the last reading (for checks polled too often
    to ask the database each time, like a generation's expiry check)."""
    return time.time() + _offset
