"""Sessions: a kernel and its /mnt/data per session key, the key being a thread id (Assistants: runs of the
thread share it) or a container id `cntr_...` (Containers, Responses: the container is the session).

The table holds the live sessions of this process: one per key, counted per project when it starts, the
least recently used ones named for eviction past `code_max_sessions`, the idle ones for the reaper. What a
session does (execute, close) is CodeInterpreter's; the table only keeps them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from assistd.tools.code_interpreter.kernel import Kernel
from assistd.tools.code_interpreter.limits import DiskCap


@dataclass
class Session:
    project: str
    key: str  # a thread id or a container id
    kernel: Kernel | None
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while it executes
    last_used: float = field(default_factory=time.monotonic)
    closed: bool = False
    # Sizes of the files the server placed in /mnt/data, by relative path: allowed on top of the disk cap.
    inputs: dict[str, int] = field(default_factory=dict)
    # The disk cap between executions (code may leave a thread writing), and what to tell the next one.
    idle_cap: DiskCap | None = None
    notes: list[str] = field(default_factory=list)
    # One per kernel lineage (a restart after a crash keeps it): what usage counts, idempotently.
    usage_key: str = field(default_factory=lambda: uuid.uuid4().hex)
    homed: bool = False  # its kernel home row was written by this session


class SessionTable:
    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self._by_key: dict[str, Session] = {}
        self._started: Counter[str] = Counter()

    # ---- reading -------------------------------------------------------------------------------------
    def get(self, key: str) -> Session | None:
        with self._lock:
            return self._by_key.get(key)

    def __getitem__(self, key: str) -> Session:
        with self._lock:
            return self._by_key[key]

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._by_key

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._by_key)

    def items(self) -> dict[str, Session]:
        with self._lock:
            return dict(self._by_key)

    def started(self, project: str) -> int:
        """Sessions started in this process for the project."""
        with self._lock:
            return self._started[project]

    def idle(self, seconds: float) -> list[Session]:
        """Sessions unused for more than `seconds`, not executing."""
        now = time.monotonic()
        with self._lock:
            return [s for s in self._by_key.values() if now - s.last_used > seconds and not s.lock.locked()]

    # ---- changing ------------------------------------------------------------------------------------
    def open(self, project: str, key: str) -> tuple[Session, bool, list[Session]]:
        """The key's session, made if there is none: (session, whether it was made, the least recently
        used idle sessions to close now that there are more than max_sessions)."""
        with self._lock:
            session = self._by_key.get(key)
            if session is not None:
                return session, False, []
            session = Session(project=project, key=key, kernel=None)
            self._by_key[key] = session
            self._started[project] += 1
            extra = len(self._by_key) - self.max_sessions
            if extra <= 0:
                return session, True, []
            idle = sorted(
                (s for s in self._by_key.values() if s is not session and not s.lock.locked()),
                key=lambda s: s.last_used,
            )
            return session, True, idle[:extra]

    def pop(self, key: str) -> Session | None:
        with self._lock:
            return self._by_key.pop(key, None)

    def remove(self, session: Session) -> bool:
        """Removes this session (not a newer one of its key); whether it was there."""
        with self._lock:
            if self._by_key.get(session.key) is session:
                del self._by_key[session.key]
                return True
            return False

    def clear(self) -> list[Session]:
        with self._lock:
            sessions = list(self._by_key.values())
            self._by_key.clear()
            return sessions
