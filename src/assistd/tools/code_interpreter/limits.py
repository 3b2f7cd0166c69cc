"""Limits of a kernel and of a session, and their enforcement.

Memory, CPU time, processes and file size are the kernel's rlimits (sandbox.py, from `sandbox_limits`) and,
where the cgroup tree is writable, its cgroup (cgroups.py, from `cgroup_limits`): the kernel dies past them
and the session replaces it. The session's disk space (/mnt/data and the kernel's home) has no kernel
mechanism: `DiskCap` measures it while a cell runs and between executions, stops the kernel past it and
removes what was written, largest first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from assistd.config import Settings
from assistd.tools.code_interpreter.cgroups import Cgroups
from assistd.tools.code_interpreter.kernel import Kernel
from assistd.tools.code_interpreter.sandbox import Limits

if TYPE_CHECKING:
    from assistd.tools.code_interpreter.sessions import Session

log = logging.getLogger("assistd.code_interpreter")

MB = 1024 * 1024
MIN_ENTRY_BYTES = 4096  # what an empty file or a directory counts against the session's disk cap


def sandbox_limits(settings: Settings) -> Limits:
    """The rlimits every kernel gets."""
    return Limits(
        memory_mb=settings.code_memory_mb,
        cpu_seconds=settings.code_cpu_seconds,
        processes=settings.code_max_processes,
        file_mb=settings.code_max_file_mb,
        tmp_mb=settings.code_tmp_mb,
        session_mb=settings.code_session_mb,
    )


def cgroup_limits(settings: Settings) -> Cgroups:
    """The cgroups of kernels: memory of all of a kernel's processes, and CPU cores."""
    return Cgroups(settings.code_memory_mb * MB, settings.code_cpu_cores, settings.code_use_cgroups)


class DiskCap:
    """The session's disk cap: what the kernel can write on the host (its /mnt/data and its home) is
    measured while a cell runs; past `cap_mb` (plus the input files the server placed, `extra`) the cell is
    stopped, and the files it wrote are removed, largest first, until the session fits again."""

    def __init__(self, kernel: Kernel, cap_mb: int, extra: int = 0) -> None:
        self.kernel = kernel
        self.dirs = [kernel.plan.data_dir, kernel.plan.run_dir / "home"]
        self.before = [entries(d) for d in self.dirs]
        self.limit = cap_mb * MB + extra
        self.cap_mb = cap_mb
        self.peak = 0
        self.next_scan = 0.0

    def usage(self, full: bool = False) -> int:
        """What the session takes; unless `full`, counting stops once it is above the limit."""
        total = 0
        for d in self.dirs:
            total += disk_usage(d, None if full else self.limit - total)
        return total

    def watch(self) -> str | None:
        """`check` while the cell runs, at most 10% of the server's time: a session with many files is
        measured less often."""
        if time.monotonic() < self.next_scan:
            return None
        started = time.monotonic()
        found = self.check()
        self.next_scan = time.monotonic() + 9 * (time.monotonic() - started)
        return found

    def check(self) -> str | None:
        used = self.usage()
        self.peak = max(self.peak, used)
        return f"{used // MB} MB written" if used > self.limit else None

    def enforce(self, who: str) -> str:
        """Removes what was written since `before` (new or changed entries, largest first; then empty
        directories, deepest first) until the session fits again; returns the note for the model."""
        written: list[tuple[int, Path, str]] = []
        made: list[tuple[Path, str]] = []
        for root, before in zip(self.dirs, self.before, strict=True):
            for rel, (size, mtime, blocks) in entries(root).items():
                if before.get(rel, (0, 0, 0))[:2] != (size, mtime):
                    written.append((max(blocks * 512, MIN_ENTRY_BYTES), root, rel))
            for dirpath, dirs, _files in os.walk(root):
                made += [(root, os.path.relpath(os.path.join(dirpath, d), root)) for d in dirs]
        used = self.usage(full=True)
        self.peak = max(self.peak, used)
        removed = []
        for size, root, rel in sorted(written, key=lambda w: -w[0]):
            if used <= self.limit:
                break
            with contextlib.suppress(OSError):
                os.unlink(root / rel)
                used -= size
                removed.append(f"/mnt/data/{rel}" if root == self.dirs[0] else f"~/{rel}")
        for root, rel in sorted(made, key=lambda m: -m[1].count(os.sep)):
            if used <= self.limit:
                break
            with contextlib.suppress(OSError):  # only empty ones
                os.rmdir(root / rel)
                used -= MIN_ENTRY_BYTES
        note = (
            "Stopped: the files of this session (/mnt/data and the home directory) may take at most "
            f"{self.cap_mb} MB on disk besides its input files, and {who} went past it (it reached "
            f"{-(-self.peak // MB)} MB)."
        )
        if removed:
            more = f" and {len(removed) - 10} more" if len(removed) > 10 else ""
            note += " Removed what it wrote: " + ", ".join(removed[:10]) + more + "."
        return note


def stop_idle_writers(sessions: Iterable[Session]) -> None:
    """Code may leave a thread writing after its execution: a session past its disk cap between
    executions has its kernel stopped and what was written since removed; the next execution says so."""
    for session in sessions:
        cap = session.idle_cap
        if cap is None or session.lock.locked():
            continue
        if cap.watch() is None or not session.lock.acquire(blocking=False):
            continue
        try:
            if session.idle_cap is not cap or session.kernel is not cap.kernel:
                continue  # an execution ran meanwhile
            log.warning("code interpreter: kernel of %s wrote past the disk cap while idle", session.key)
            cap.kernel.signal_kill()
            session.idle_cap = None
            session.notes.append(
                cap.enforce("code left running after an execution")
                + " The kernel was stopped: variables and imports are lost."
            )
        finally:
            session.lock.release()


def entries(root: Path) -> dict[str, tuple[int, int, int]]:
    """Size, mtime and blocks of every entry under root but directories (files, links, fifos...)."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                st = os.lstat(full)
                found[os.path.relpath(full, root)] = (st.st_size, st.st_mtime_ns, st.st_blocks)
    return found


def accounted(st: os.stat_result) -> int:
    """What one entry counts against the cap: its allocated blocks (a sparse file counts what it really
    takes), at least MIN_ENTRY_BYTES (an inode and a directory entry: a million empty files are not free)."""
    return max(st.st_blocks * 512, MIN_ENTRY_BYTES)


def disk_usage(root: Path, stop_above: int | None = None) -> int:
    """What the entries under root count against the cap (`accounted`), links never followed; the walk
    stops once the total is above `stop_above`."""
    total = 0
    for dirpath, dirs, files in os.walk(root):
        for name in files + dirs:
            with contextlib.suppress(OSError):
                total += accounted(os.lstat(os.path.join(dirpath, name)))
            if stop_above is not None and total > stop_above:
                return total
    return total
