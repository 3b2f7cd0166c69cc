"""CodeInterpreter: one sandboxed kernel per thread (a session), a pool of warm kernels, files in and out.

The run engine calls `execute(project, thread_id, code, input_files)` from worker threads. Executions of
one thread are serialised by the session's lock; different threads run in parallel. A session keeps its
kernel (variables survive across runs) until it is idle for `kernel_idle_seconds`, its thread is deleted,
or `code_max_sessions` forces the least recently used one out.

It fails closed: without isolation (a working bubblewrap, see sandbox.py) it runs no code, says so at start,
refuses assistants and runs that ask for it (`check_tools`, a 400) and raises `CodeInterpreterUnavailable`
from `execute`, unless the operator passed code_allow_unsandboxed. A session's disk space (/mnt/data and the
kernel's home) is capped at code_session_mb: an execution that writes past it is stopped.

In a cluster (`homes`, see homes.py) a session's kernel lives on one worker: it records that in
`kernel_homes` so that the thread's next run is sent there, and every few seconds (or when woken by a
notification, `wake`) shuts down the sessions whose thread was deleted elsewhere or whose home moved to
another worker. A session that starts while the row names a kernel elsewhere (a dead worker, or one that
lost it) is told, like after a kernel restart, that its variables and files are gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from assistd.config import Settings
from assistd.errors import InvalidRequest
from assistd.tools.code_interpreter import reaper
from assistd.tools.code_interpreter.cgroups import Cgroups
from assistd.tools.code_interpreter.homes import KernelHomes, ThreadGone
from assistd.tools.code_interpreter.kernel import Kernel, KernelStartError, kill_uid, uid_has_processes
from assistd.tools.code_interpreter.sandbox import MOUNT_DATA, UID_RANGE, KernelPlan, Limits, Sandbox

log = logging.getLogger("assistd.code_interpreter")

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
MAX_OUTPUT_FILES = 20
MAX_SCANNED = 10000  # files looked at under /mnt/data after an execution
MB = 1024 * 1024
MIN_ENTRY_BYTES = 4096  # what an empty file or a directory counts against the session's disk cap


class CodeInterpreterUnavailable(RuntimeError):
    """No isolation for kernels on this machine and no opt-out: the code interpreter runs nothing."""


@dataclass
class ExecutionResult:
    logs: str  # stdout + stderr + traceback text (ANSI stripped), truncated to a limit
    images: list[bytes] = field(default_factory=list)  # PNG bytes, in display order
    files: list[tuple[str, bytes]] = field(default_factory=list)  # written/changed under /mnt/data
    error: bool = False  # the code raised (traceback in logs) or timed out / kernel died


@dataclass
class Session:
    project: str
    thread_id: str
    kernel: Kernel | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)
    closed: bool = False
    # Sizes of the files the server placed in /mnt/data, by name: allowed on top of the disk cap.
    inputs: dict[str, int] = field(default_factory=dict)
    # The disk cap between executions (code may leave a thread writing), and what to tell the next one.
    idle_cap: DiskCap | None = None
    notes: list[str] = field(default_factory=list)
    # One per kernel lineage (a restart after a crash keeps it): what usage counts, idempotently.
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    homed: bool = False  # its kernel home row was written by this session


Snapshot = dict[str, tuple[int, int]]


KERNEL_MOVED = (
    "The kernel of this thread was on another worker, which is gone or no longer holds it. A new kernel "
    "was started: variables and imports are lost, and so are files written to /mnt/data (the thread's "
    "input files are placed again)."
)


class CodeInterpreter:
    def __init__(self, settings: Settings, homes: KernelHomes | None = None) -> None:
        self.settings = settings
        self.homes = homes  # None: one process, nothing recorded in the database
        limits = Limits(
            memory_mb=settings.code_memory_mb,
            cpu_seconds=settings.code_cpu_seconds,
            processes=settings.code_max_processes,
            file_mb=settings.code_max_file_mb,
            tmp_mb=settings.code_tmp_mb,
            session_mb=settings.code_session_mb,
        )
        self.sandbox = Sandbox(
            limits, settings.code_sandbox_uid_base, settings.code_use_bwrap, settings.code_bwrap_path
        )
        self.cgroups = Cgroups(
            settings.code_memory_mb * MB, settings.code_cpu_cores, settings.code_use_cgroups
        )
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._pool: list[Kernel] = []
        self._pool_filling = 0
        self._slot_locks: dict[int, int] = {}  # slot -> fd holding its lock file
        self._started: Counter[str] = Counter()
        # Called (project, thread_id, session key) when a thread's session starts: the server records it as
        # usage, once per key.
        self.on_session_started: Callable[[str, str, str], None] | None = None
        self._root: Path | None = None
        self._closed = threading.Event()
        self._reaper: threading.Thread | None = None
        self._home_watch: threading.Thread | None = None
        self._wake = threading.Event()
        self._font_cache: list[Path] = []
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="code-kernel-spawner")

    # ---- fail closed ---------------------------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        """Why the code interpreter refuses to run code here, or None when it runs (isolated, or the
        operator opted out). Probes the sandbox on first use (cached)."""
        if self.sandbox.isolated or self.settings.code_allow_unsandboxed:
            return None
        return (
            "The code interpreter is disabled on this server: it has no isolation for model-written code "
            f"({self.sandbox.why_not_isolated()}). The operator can install bubblewrap, or start the server "
            "with --code-allow-unsandboxed to run code with the server's privileges."
        )

    def check_tools(self, tools: list[dict], param: str) -> None:
        """A tools check (AssistantService.tools_checks): code_interpreter is refused with a 400 here."""
        if any(isinstance(t, dict) and t.get("type") == "code_interpreter" for t in tools or []):
            reason = self.unavailable_reason()
            if reason is not None:
                raise InvalidRequest(reason, param=param, code="unsupported_tool")

    # ---- life cycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Kills kernels of dead servers, probes the sandbox, logs what is protected, fills the pool.
        Blocking: call it in a thread."""
        reaped = reaper.reap_orphans(self._kill_orphan_uid)
        if reaped:
            log.warning("code interpreter: killed %d kernel(s) left behind by servers that died", reaped)
        self.cgroups.probe()  # also kills what runs in the cgroups of servers that died, and removes them
        try:
            self._ensure_root()
        except KernelStartError:  # shut down before it started
            return
        for name, on, why in self.sandbox_report():
            (log.info if on else log.warning)(
                "code interpreter sandbox: %-24s %-3s %s", name, "on" if on else "OFF", why
            )
        reason = self.unavailable_reason()
        if reason is not None:
            log.error("code interpreter: DISABLED, assistants and runs asking for it get a 400. %s", reason)
            return
        if not self.sandbox.isolated:
            log.warning(
                "code interpreter: UNSANDBOXED (--code-allow-unsandboxed): model-written code runs with "
                "this server's privileges%s on the host filesystem: %s",
                " (root)" if self.sandbox.is_root and not self.sandbox.setuid else "",
                self.sandbox.why_not_isolated(),
            )
        self._start_reaper()
        self._build_font_cache()
        self._fill_pool()

    def _build_font_cache(self) -> None:
        """matplotlib scans the system fonts on its first import in a new HOME (~0.7 s). The server builds
        that cache once, itself (a kernel-built cache could be poisoned), and every new kernel gets a copy."""
        cache = self._ensure_root() / "fontcache"
        env = {"PATH": "/usr/bin:/bin", "MPLCONFIGDIR": str(cache), "HOME": str(cache)}
        try:
            subprocess.run(
                [self.sandbox.python, "-c", "import matplotlib.font_manager"],
                env=env,
                capture_output=True,
                timeout=120,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.info("code interpreter: no shared matplotlib font cache: %s", exc)
            return
        self._font_cache = sorted(cache.glob("fontlist-*.json"))

    def _start_reaper(self) -> None:
        with self._lock:
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap_loop, name="code-idle-reaper", daemon=True)
                self._reaper.start()
            if self.homes is not None and self._home_watch is None:
                self._home_watch = threading.Thread(
                    target=self._home_loop, name="code-home-watch", daemon=True
                )
                self._home_watch.start()

    def shutdown(self) -> None:
        self._closed.set()
        self._wake.set()
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
            pool, self._pool = self._pool, []
        for session in sessions:  # an execution under way ends at once: its kernel dies under it
            session.closed = True
            if session.kernel is not None:
                session.kernel.signal_kill()
        for session in sessions:
            with session.lock:
                self._end_session(session)
        for kernel in pool:
            self._discard(kernel)
        if self.homes is not None:
            try:
                self.homes.release_all()
            except Exception as exc:  # stopping: the rows name a worker whose lease runs out
                log.warning("code interpreter: could not remove this worker's kernel homes: %s", exc)
        self._spawner.shutdown(wait=False)
        self.cgroups.close()
        if self._root is not None and self.settings.code_sessions_dir is None:
            shutil.rmtree(self._root, ignore_errors=True)

    def sandbox_report(self) -> list[tuple[str, bool, str]]:
        return self.sandbox.report() + self.cgroups.report()

    def _kill_orphan_uid(self, uid: int) -> None:
        """Ends the processes of a dead server's kernel uid, unless a live server holds that uid's slot."""
        slot = uid - self.sandbox.uid_base
        if not (0 <= slot < UID_RANGE) or not self.sandbox.is_root:
            return
        try:
            lock = _uid_lock_dir() / f"{uid}.lock"
        except KernelStartError as exc:
            log.error("code interpreter: %s", exc)
            return
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while killing: no server takes the uid
            if uid_has_processes(uid):
                kill_uid(self.sandbox.python, uid)
        except BlockingIOError:
            return  # a live kernel of another server holds this uid
        finally:
            os.close(fd)

    def sessions_started(self, project: str) -> int:
        with self._lock:
            return self._started[project]

    def close_session(self, thread_id: str, release: bool = True) -> None:
        """Ends the thread's session here. `release=False` leaves its kernel home row alone: the thread
        delete hook runs inside the deleting transaction, which removes the row (ON DELETE CASCADE)."""
        with self._lock:
            session = self._sessions.pop(thread_id, None)
        if session is not None:
            session.closed = True
            if session.kernel is not None and session.lock.locked():  # an execution under way ends now
                session.kernel.signal_kill()
            with session.lock:
                self._end_session(session)
            log.info("code interpreter: session of %s closed", thread_id)
            if release:
                self._release_home(session)

    def wake(self, _payload: str = "") -> None:
        """Checks the kernel homes now (a thread was deleted somewhere: a database notification)."""
        self._wake.set()

    # ---- execution ---------------------------------------------------------------------------------
    def execute(
        self, project: str, thread_id: str, code: str, input_files: list[tuple[str, bytes]]
    ) -> ExecutionResult:
        reason = self.unavailable_reason()
        if reason is not None:
            raise CodeInterpreterUnavailable(reason)
        self._start_reaper()
        session = self._session(project, thread_id)
        with session.lock:
            if session.closed:  # closed between lookup and lock: start afresh
                return self.execute(project, thread_id, code, input_files)
            session.last_used = time.monotonic()
            try:
                moved = self._take_home(session)
            except ThreadGone:
                self._drop_locked(session)
                gone = "The thread was deleted: its code interpreter session ended."
                return ExecutionResult(logs=gone, error=True)
            if moved and session.homed:  # another worker ran this thread meanwhile: this kernel is stale
                log.info("code interpreter: home of %s moved away and back: new session", thread_id)
                self._drop_locked(session)
                return self.execute(project, thread_id, code, input_files)
            if moved:
                session.notes.append(KERNEL_MOVED)
            session.homed = True
            try:
                return self._execute_locked(session, code, input_files)
            finally:
                session.last_used = time.monotonic()

    def _take_home(self, session: Session) -> bool:
        """Records this worker as the thread's kernel home (on every execution: it refreshes updated_at);
        True when the row named another kernel (another worker, or an earlier session of this one)."""
        if self.homes is None:
            return False
        try:
            previous = self.homes.take(session.thread_id)
        except ThreadGone:
            raise
        except Exception as exc:  # the database is out past the retries: the code still runs here
            log.warning("code interpreter: kernel home of %s not recorded: %s", session.thread_id, exc)
            return False  # the home check writes the row when the database is back
        return previous is not None and (previous != self.homes.worker_id or not session.homed)

    def _drop_locked(self, session: Session) -> None:
        """Ends a session whose lock the caller holds (its home row is left to whoever holds it now)."""
        with self._lock:
            if self._sessions.get(session.thread_id) is session:
                del self._sessions[session.thread_id]
        self._end_session(session)

    def _release_home(self, session: Session) -> None:
        if self.homes is None:
            return
        with self._lock:
            if session.thread_id in self._sessions:  # a new session of the thread took the row meanwhile
                return
        try:
            self.homes.release(session.thread_id)
        except Exception as exc:  # the home check adopts or the claim outlives a dead worker
            log.warning("code interpreter: kernel home of %s not removed: %s", session.thread_id, exc)

    def _execute_locked(
        self, session: Session, code: str, input_files: list[tuple[str, bytes]]
    ) -> ExecutionResult:
        notes, session.notes = session.notes, []
        session.idle_cap = None
        if session.kernel is not None and not session.kernel.alive():
            notes.append(self._kernel_died(session, session.kernel, "while idle"))
        if session.kernel is None:
            try:
                session.kernel = self._acquire()
            except (KernelStartError, RuntimeError, OSError) as exc:
                log.error("code interpreter: no kernel for %s: %s", session.thread_id, exc)
                return ExecutionResult(
                    logs="\n".join([*notes, f"The code interpreter could not start: {exc}"]), error=True
                )
        kernel = session.kernel
        session.inputs.update(self._place_inputs(kernel, input_files))
        before = snapshot(kernel.plan.data_dir)
        real_path = self.sandbox.data_path(kernel.plan)
        if real_path != MOUNT_DATA:
            code = code.replace(MOUNT_DATA, real_path)
        cap = DiskCap(kernel, self.settings.code_session_mb, sum(session.inputs.values()))
        out = kernel.run(
            code, self.settings.code_timeout_seconds, self.settings.code_max_output_chars, watch=cap.watch
        )
        logs = ANSI.sub("", out.logs.text())
        if real_path != MOUNT_DATA:
            logs = logs.replace(real_path, MOUNT_DATA)
        if out.stopped or cap.check() is not None:
            out.error = True
            notes.append(cap.enforce("this execution"))
        if out.timed_out:
            notes.append(
                f"Execution timed out after {self.settings.code_timeout_seconds} s and was interrupted."
            )
        if out.stuck:
            log.warning(
                "code interpreter: kernel of %s did not stop after an interrupt: restarting",
                session.thread_id,
            )
            notes.append(
                "The code did not stop after the interrupt: the kernel was restarted, its variables are lost."
            )
            self._replace(session)
        elif out.died or not kernel.alive():
            out.error = True
            notes.append(self._kernel_died(session, kernel, "during the execution"))
        max_bytes = self.settings.code_max_file_mb * 1024 * 1024
        files = changed_files(kernel.plan.data_dir, before, max_bytes, kernel.plan.uid)
        if session.kernel is not None and session.kernel.alive():
            session.idle_cap = DiskCap(
                session.kernel, self.settings.code_session_mb, sum(session.inputs.values())
            )
        if notes:
            logs = (logs.rstrip("\n") + "\n" if logs.strip() else "") + "\n".join(notes)
        return ExecutionResult(logs=logs, images=out.images, files=files, error=out.error)

    def _kernel_died(self, session: Session, kernel: Kernel, when: str) -> str:
        if kernel.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                kernel.proc.wait(timeout=2)
        reason = kernel.exit_reason()
        if session.closed or self._closed.is_set():
            self._replace(session)  # only cleans up
            return "The code interpreter session was closed during the execution."
        log.warning(
            "code interpreter: kernel of %s died %s (%s): replacing it", session.thread_id, when, reason
        )
        self._replace(session)
        if session.kernel is None:
            return (
                f"The kernel died {when} ({reason}) and could not be restarted; files in /mnt/data are lost."
            )
        return (
            f"The kernel died {when} ({reason}; the memory, CPU and process limits end a kernel). "
            "A new kernel was started: variables and imports are lost, files in /mnt/data are kept."
        )

    def _replace(self, session: Session) -> None:
        """Swaps a dead or stuck kernel for a new one that keeps the session directory."""
        old = session.kernel
        session.kernel = None
        if old is None:
            return
        old.kill()
        shutil.rmtree(old.plan.run_dir.parent, ignore_errors=True)  # its run dir; the data dir is apart
        self._free_slot(old.slot)
        if session.closed or self._closed.is_set():
            shutil.rmtree(old.plan.data_dir, ignore_errors=True)
            return
        slot = None
        try:
            slot = self._slot()
            plan = self._plan(slot, data_dir=old.plan.data_dir)
            self._chown_tree(old.plan.data_dir, plan.uid)
            kernel = Kernel(self.sandbox, plan, slot, self._spawner, self.cgroups)
        except (KernelStartError, OSError) as exc:
            log.error("code interpreter: no replacement kernel for %s: %s", session.thread_id, exc)
            if slot is not None:
                self._free_slot(slot)
            shutil.rmtree(old.plan.data_dir, ignore_errors=True)
            return
        try:
            kernel.start()
        except (KernelStartError, RuntimeError, OSError) as exc:
            log.error("code interpreter: replacement kernel for %s failed: %s", session.thread_id, exc)
            self._discard(kernel)  # the session's files go with it: the next execution starts afresh
            return
        session.kernel = kernel

    # ---- sessions and pool ---------------------------------------------------------------------------
    def _session(self, project: str, thread_id: str) -> Session:
        evict: list[Session] = []
        with self._lock:
            session = self._sessions.get(thread_id)
            started = session is None
            if session is None:
                session = Session(project=project, thread_id=thread_id, kernel=None)
                self._sessions[thread_id] = session
                self._started[project] += 1
                log.info("code interpreter: new session for %s (project %s)", thread_id, project)
                evict = self._over_limit(session)
        if started and self.on_session_started is not None:
            self.on_session_started(project, thread_id, session.key)
        for old in evict:
            self.close_session(old.thread_id)
        return session

    def _over_limit(self, keep: Session) -> list[Session]:
        extra = len(self._sessions) - self.settings.code_max_sessions
        if extra <= 0:
            return []
        idle = sorted(
            (s for s in self._sessions.values() if s is not keep and not s.lock.locked()),
            key=lambda s: s.last_used,
        )
        return idle[:extra]

    def _acquire(self) -> Kernel:
        kernel = None
        with self._lock:
            while self._pool:
                candidate = self._pool.pop(0)
                if candidate.alive():
                    kernel = candidate
                    break
                threading.Thread(target=self._discard, args=(candidate,), daemon=True).start()
        self._refill_async()
        if kernel is not None:
            return kernel
        return self._new_kernel(preload=False)

    def _fill_pool(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                if len(self._pool) + self._pool_filling >= self.settings.kernel_pool_size:
                    return
                self._pool_filling += 1
            try:
                kernel = self._new_kernel(preload=True)
            except (KernelStartError, RuntimeError) as exc:  # RuntimeError: shut down meanwhile
                if not self._closed.is_set():
                    log.error("code interpreter: could not pre-start a kernel: %s", exc)
                return
            finally:
                with self._lock:
                    self._pool_filling -= 1
            with self._lock:
                if not self._closed.is_set():
                    self._pool.append(kernel)
                    kernel = None
            if kernel is not None:
                self._discard(kernel)

    def _refill_async(self) -> None:
        if not self._closed.is_set():
            threading.Thread(target=self._fill_pool, name="code-pool-fill", daemon=True).start()

    def _new_kernel(self, preload: bool) -> Kernel:
        self._ensure_root()
        slot = self._slot()
        plan = self._plan(slot)
        kernel = Kernel(self.sandbox, plan, slot, self._spawner, self.cgroups)
        try:
            kernel.start()
            if preload and self.settings.code_preload:
                kernel.run(self.settings.code_preload, 60, 1000, silent=True)
        except Exception:
            self._discard(kernel)
            raise
        return kernel

    def _discard(self, kernel: Kernel) -> None:
        """Kills the kernel and removes its directories, the session directory included."""
        kernel.kill()
        shutil.rmtree(kernel.plan.run_dir.parent, ignore_errors=True)
        shutil.rmtree(kernel.plan.data_dir, ignore_errors=True)
        self._free_slot(kernel.slot)

    def _end_session(self, session: Session) -> None:
        session.closed = True
        if session.kernel is not None:
            self._discard(session.kernel)
            session.kernel = None

    def _reap_loop(self) -> None:
        idle = self.settings.kernel_idle_seconds
        while not self._closed.wait(min(max(idle / 4, 0.2), 1.0)):
            self._watch_idle_disk()
            now = time.monotonic()
            with self._lock:
                stale = [
                    s for s in self._sessions.values() if now - s.last_used > idle and not s.lock.locked()
                ]
            for session in stale:
                log.info(
                    "code interpreter: session of %s idle for %ss: shutting it down", session.thread_id, idle
                )
                with self._lock:
                    if self._sessions.get(session.thread_id) is session:
                        del self._sessions[session.thread_id]
                with session.lock:
                    self._end_session(session)
                self._release_home(session)

    def _home_loop(self) -> None:
        """Shuts down the sessions held here whose thread was deleted (on any node) or whose kernel home
        moved to another worker; writes the missing row of the others. Runs every code_home_check_seconds,
        or at once when woken."""
        while not self._closed.is_set():
            self._wake.wait(self.settings.code_home_check_seconds)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self.check_homes()
            except Exception as exc:  # an outage: the next round looks again
                log.warning("code interpreter: kernel home check failed: %s", exc)

    def check_homes(self) -> None:
        if self.homes is None:
            return
        with self._lock:
            sessions = dict(self._sessions)
        if not sessions:
            return
        used = {thread_id: session.last_used for thread_id, session in sessions.items()}
        found = self.homes.check(sessions)
        orphans = []
        for thread_id, session in sessions.items():
            home = found.homes.get(thread_id)
            if thread_id not in found.existing:
                log.info("code interpreter: thread %s was deleted: shutting its kernel down", thread_id)
                self.close_session(thread_id, release=False)
            elif not session.homed or session.lock.locked():
                continue  # its execution writes the row
            elif home is not None and home != self.homes.worker_id:
                if not session.lock.acquire(blocking=False):
                    continue  # an execution started: it takes the row back
                try:
                    if session.closed or session.last_used != used[thread_id]:
                        continue  # it ran since the read: the row may name this worker again
                    log.info(
                        "code interpreter: kernel home of %s moved to %s: shutting down", thread_id, home
                    )
                    self._drop_locked(session)
                finally:
                    session.lock.release()
            elif home is None:
                orphans.append(thread_id)
        if orphans:
            self.homes.adopt(orphans)

    def _watch_idle_disk(self) -> None:
        """Code may leave a thread writing after its execution: a session past its disk cap between
        executions has its kernel stopped and what was written since removed; the next execution says so."""
        with self._lock:
            watched = [s for s in self._sessions.values() if s.idle_cap is not None and not s.lock.locked()]
        for session in watched:
            cap = session.idle_cap
            if cap is None or cap.watch() is None or not session.lock.acquire(blocking=False):
                continue
            try:
                if session.idle_cap is not cap or session.kernel is not cap.kernel:
                    continue  # an execution ran meanwhile
                log.warning(
                    "code interpreter: kernel of %s wrote past the disk cap while idle", session.thread_id
                )
                cap.kernel.signal_kill()
                session.idle_cap = None
                session.notes.append(
                    cap.enforce("code left running after an execution")
                    + " The kernel was stopped: variables and imports are lost."
                )
            finally:
                session.lock.release()

    # ---- directories, uids, files --------------------------------------------------------------------
    def _ensure_root(self) -> Path:
        with self._lock:
            if self._closed.is_set():
                raise KernelStartError("the code interpreter is shut down")
            if self._root is None:
                self.sandbox.probe()
                base = self.settings.code_sessions_dir
                if base is None:
                    remove_stale_roots()
                    root = Path(tempfile.mkdtemp(prefix=f"assistd-code-{os.getpid()}-"))
                else:
                    root = Path(base).resolve()
                    root.mkdir(parents=True, exist_ok=True)
                root.chmod(0o711)  # kernels may cross it to reach their own directory, not list it
                self._root = root
            return self._root

    def _slot(self) -> int:
        """A slot (uid offset) free on this machine: other server processes use the same uid range, so a
        slot is held by an flock on a file for the kernel's life (released by the kernel's end or ours)."""
        with self._lock:
            if not self.sandbox.setuid:
                slot = max(self._slot_locks, default=-1) + 1
                self._slot_locks[slot] = -1
                return slot
            lock_dir = _uid_lock_dir()
            for slot in range(UID_RANGE):
                if slot in self._slot_locks:
                    continue
                fd = os.open(
                    lock_dir / f"{self.sandbox.uid_base + slot}.lock",
                    os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                    0o600,
                )
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._slot_locks[slot] = fd
                break
            else:
                raise KernelStartError(f"all {UID_RANGE} kernel uids are in use")
        uid = self.sandbox.uid_base + slot
        if uid_has_processes(uid):  # leftovers of a server that crashed without bwrap's die-with-parent
            kill_uid(self.sandbox.python, uid)
        return slot

    def _free_slot(self, slot: int) -> None:
        with self._lock:
            fd = self._slot_locks.pop(slot, None)
        if fd is not None and fd >= 0:
            os.close(fd)

    def _plan(self, slot: int, data_dir: Path | None = None) -> KernelPlan:
        root = self._ensure_root()
        kdir = Path(tempfile.mkdtemp(prefix="k", dir=root))
        run_dir = kdir / "run"
        (run_dir / "home").mkdir(parents=True)
        kdir.chmod(0o711)
        if data_dir is None:
            data_dir = kdir.with_name(kdir.name + "-data")
            data_dir.mkdir()
        mpl = run_dir / "home" / ".matplotlib"
        mpl.mkdir()
        for cached in self._font_cache:
            shutil.copyfile(cached, mpl / cached.name)
        uid = self.sandbox.kernel_uid(slot)
        if uid is not None:
            self._chown_tree(run_dir, uid)
            os.chown(data_dir, uid, uid)
        run_dir.chmod(0o700)
        data_dir.chmod(0o700)
        return KernelPlan(
            run_dir=run_dir, data_dir=data_dir, uid=uid, connection_file=run_dir / "kernel.json"
        )

    def _place_inputs(self, kernel: Kernel, input_files: list[tuple[str, bytes]]) -> dict[str, int]:
        """Copies the input files not yet there into /mnt/data; returns their sizes by name."""
        placed: dict[str, int] = {}
        for name, content in input_files:
            safe = safe_name(name)
            # The kernel owns this directory: never follow a link it planted (the server writes as root).
            try:
                fd = os.open(
                    kernel.plan.data_dir / safe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
                )
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
                if kernel.plan.uid is not None:
                    os.fchown(fh.fileno(), kernel.plan.uid, kernel.plan.uid)
            placed[safe] = len(content)
        return placed

    @staticmethod
    def _chown_tree(path: Path, uid: int | None) -> None:
        if uid is None:
            return
        for dirpath, _dirs, files in os.walk(path):
            os.chown(dirpath, uid, uid, follow_symlinks=False)
            for f in files:
                os.chown(os.path.join(dirpath, f), uid, uid, follow_symlinks=False)


def _uid_lock_dir() -> Path:
    """Where the kernel uids' lock files live (machine-wide: every server of this uid uses it)."""
    path = Path(tempfile.gettempdir()) / "assistd-uids"
    if not reaper.private_dir(path):
        raise KernelStartError(f"{path} is not a private directory of this uid: no kernel uid can be held")
    return path


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


def remove_stale_roots() -> None:
    """Session roots left in the temp dir by server processes that are gone (a crash, a SIGKILL)."""
    for path in Path(tempfile.gettempdir()).glob("assistd-code-*-*"):
        pid = path.name.split("-")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue


def safe_name(name: str) -> str:
    """A file name usable under /mnt/data: the last path component, never empty, '.' or '..'."""
    base = os.path.basename(name.replace("\\", "/")).strip().replace("\x00", "")
    return base if base not in ("", ".", "..") else "file"


def snapshot(root: Path) -> Snapshot:
    """Size and mtime of the regular files under root (symlinks never followed; at most MAX_SCANNED)."""
    state: Snapshot = {}
    seen = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            seen += 1
            if seen > MAX_SCANNED:
                return state
            full = os.path.join(dirpath, f)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                state[os.path.relpath(full, root)] = (st.st_size, st.st_mtime_ns)
    return state


def changed_files(root: Path, before: Snapshot, max_bytes: int, uid: int | None) -> list[tuple[str, bytes]]:
    """Files under root that are new or changed since `before`: regular files only, never through a link,
    and (with a kernel uid) only files that uid owns, since the kernel may swap a directory for a link to a
    host path between the scan and the read."""
    after = snapshot(root)
    out: list[tuple[str, bytes]] = []
    real_root = os.path.realpath(root)
    for rel, info in sorted(after.items()):
        if before.get(rel) == info or info[0] > max_bytes:
            continue
        try:
            fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as fh:
                st = os.fstat(fd)
                inside = os.path.realpath(f"/proc/self/fd/{fd}").startswith(real_root + os.sep)
                if not stat.S_ISREG(st.st_mode) or not inside or (uid is not None and st.st_uid != uid):
                    continue
                out.append((rel, fh.read(max_bytes + 1)[:max_bytes]))
        except OSError:
            continue
        if len(out) >= MAX_OUTPUT_FILES:
            break
    return out
