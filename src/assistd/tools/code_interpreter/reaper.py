"""Kernels never outlive their server: each live kernel is recorded with its server's identity, and a server
that starts kills the kernels of servers that are gone.

The parent-death signal (bwrap --die-with-parent, PR_SET_PDEATHSIG in the launcher) ends a kernel when its
server dies; this registry catches what that misses (processes the code started, a kernel whose launcher
had not yet armed the signal). A record is a small JSON file in a directory private to the server's uid
(``$TMPDIR/assistd-kernels-<uid>``), named after the kernel's pid. A process is identified by its pid and
its start time (``/proc/PID/stat`` field 22), so a reused pid is never mistaken for a kernel or a server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("assistd.code_interpreter")


def registry_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"assistd-kernels-{os.geteuid()}"


def process_start(pid: int) -> int | None:
    """The start time of a live process (clock ticks since boot), None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(identity: dict) -> bool:
    pid, start = identity.get("pid"), identity.get("start")
    return isinstance(pid, int) and start is not None and process_start(pid) == start


def private_dir(path: Path) -> bool:
    """Creates `path` 0700 if missing; whether it is a directory of this uid that nobody else may write
    (a directory planted in a shared temp dir by another user is not)."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = os.lstat(path)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def _private_dir() -> Path | None:
    """The registry directory; None when it is not private (see `private_dir`)."""
    path = registry_dir()
    if not private_dir(path):
        log.error(
            "code interpreter: %s is not a private directory of this uid: kernels are not recorded", path
        )
        return None
    return path


def record(kernel_pid: int, uid: int | None, server: dict | None = None) -> Path | None:
    """Writes the record of a kernel just spawned by this process (`server`: its identity, by default this
    process's); returns its path (for `forget`)."""
    folder = _private_dir()
    start = process_start(kernel_pid)
    if folder is None or start is None:
        return None
    data = {
        "server": server or {"pid": os.getpid(), "start": process_start(os.getpid())},
        "kernel": {"pid": kernel_pid, "start": start},
        "uid": uid,
    }
    path = folder / f"{kernel_pid}-{start}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return path


def forget(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def reap_orphans(kill_uid: Callable[[int], None] | None = None) -> int:
    """Kills the kernels (and what they started) of servers that are gone; returns how many records it
    acted on. `kill_uid(uid)` ends every process of a kernel uid no live kernel holds."""
    folder = _private_dir()
    if folder is None:
        return 0
    reaped = 0
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            forget(path)
            continue
        if is_alive(data.get("server") or {}):
            continue
        kernel = data.get("kernel") or {}
        killed = kill_tree(kernel) if is_alive(kernel) else kill_session(kernel)
        if data.get("uid") is not None and kill_uid is not None:
            kill_uid(data["uid"])
        log.warning(
            "code interpreter: reaped a kernel (pid %s, %d process(es)) left by server pid %s, which is gone",
            kernel.get("pid"),
            killed,
            (data.get("server") or {}).get("pid"),
        )
        forget(path)
        reaped += 1
    return reaped


def kill_tree(identity: dict) -> int:
    """SIGKILL to a process, its descendants and its session (the launcher started one). Returns how many
    processes were signalled."""
    pid = identity["pid"]
    targets = {pid, *descendants(pid), *_session_members(pid)}
    for target in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while is_alive(identity) and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(targets)


def kill_session(identity: dict) -> int:
    """The kernel is gone (its parent-death signal) but what it started may not be: the processes of the
    session it led, started after it. Nothing is done when its pid now leads another session."""
    pid, start = identity.get("pid"), identity.get("start")
    if not isinstance(pid, int) or not isinstance(start, int) or process_start(pid) is not None:
        return 0
    targets = [member for member in _session_members(pid) if (process_start(member) or 0) >= start]
    for target in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGKILL)
    return len(targets)


def _session_members(sid: int) -> list[int]:
    found = []
    for entry in _proc_stats():
        if entry[2] == sid:
            found.append(entry[0])
    return found


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid, _sid in _proc_stats():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _proc_stats() -> list[tuple[int, int, int]]:
    """(pid, ppid, session id) of every process."""
    rows = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            rows.append((int(entry.name), int(fields[1]), int(fields[3])))
    return rows
