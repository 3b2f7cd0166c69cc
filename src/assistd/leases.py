"""Who holds a row that a background worker executes (a run, a file being indexed).

A worker id is `host:pid:random`. A row whose lease ran out may be taken by any process sharing the
database; a row held by a process of this host that no longer exists may be taken at once."""

from __future__ import annotations

import os
import socket


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def held_by_dead_local_process(holder: str | None, me: str) -> bool:
    """True when `holder` is a worker of this host, other than `me`, whose process has ended."""
    parts = (holder or "").split(":")
    if holder == me or len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    return not _alive(int(parts[1]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
