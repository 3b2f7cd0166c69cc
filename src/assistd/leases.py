"""Who holds a row that a background worker executes (a run, a file being indexed).

A worker id is `host:pid:random`, for people reading logs and tables only: liveness is by lease (database
clock) alone. Nothing trusts a hostname or a pid, which mean nothing across containers or pid namespaces."""

from __future__ import annotations

import os
import socket


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
