"""CodeInterpreter: sandboxed kernels for sessions, one per session key (a thread id, or a container id).

Its parts, one concept each: `sessions.py` (the live sessions of this process), `pool.py` (kernels: their
directories and uids, the warm pool, replacements), `files.py` (files into and out of /mnt/data),
`limits.py` (the kernel's limits and the session's disk cap), `homes.py` (which worker holds a session's
kernel), `sandbox.py` / `kernel.py` / `cgroups.py` / `reaper.py` (one kernel in its sandbox). This module
ties them: it executes code in a session, keeps sessions to their limits and homes, and starts and stops.

The run engine calls `execute(project, key, code, input_files)` from worker threads (the Containers service
too). Executions of one session are serialised by the session's lock; different sessions run in parallel. A
session keeps its kernel (variables survive across executions) until it is idle for
`kernel_idle_seconds`, its thread or container is deleted (or the container expires), or
`code_max_sessions` forces the least recently used one out.

It fails closed: without isolation (a working bubblewrap, see sandbox.py) it runs no code, says so at start,
refuses assistants and runs that ask for it (`check_tools`, a 400) and raises `CodeInterpreterUnavailable`
from `execute`, unless the operator passed code_allow_unsandboxed. A session's disk space (/mnt/data and the
kernel's home) is capped at code_session_mb: an execution that writes past it is stopped.

In a cluster (`homes`) a session's kernel lives on one worker: it records that so that the thread's next run
is sent there, and every few seconds (or when woken by a notification, `wake`) shuts down the sessions whose
thread or container is gone or whose home moved to another worker. A session that starts while its home
names a kernel elsewhere (a dead worker, or one that lost it) is told, like after a kernel restart, that its
variables and files are gone.
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from assistd.config import Settings
from assistd.errors import InvalidRequest
from assistd.tools.code_interpreter import files, reaper
from assistd.tools.code_interpreter.homes import Homes, SessionGone, is_container
from assistd.tools.code_interpreter.kernel import Kernel, KernelStartError
from assistd.tools.code_interpreter.limits import DiskCap, cgroup_limits, sandbox_limits, stop_idle_writers
from assistd.tools.code_interpreter.pool import KernelPool
from assistd.tools.code_interpreter.sandbox import MOUNT_DATA, Sandbox
from assistd.tools.code_interpreter.sessions import Session, SessionTable

log = logging.getLogger("assistd.code_interpreter")

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


class CodeInterpreterUnavailable(RuntimeError):
    """No isolation for kernels on this machine and no opt-out: the code interpreter runs nothing."""


@dataclass
class ExecutionResult:
    logs: str  # stdout + stderr + traceback text (ANSI stripped), truncated to a limit
    images: list[bytes] = field(default_factory=list)  # PNG bytes, in display order
    files: list[tuple[str, bytes]] = field(default_factory=list)  # written/changed under /mnt/data
    error: bool = False  # the code raised (traceback in logs) or timed out / kernel died
    removed: list[str] = field(default_factory=list)  # files of /mnt/data the execution removed


class CodeInterpreter:
    def __init__(self, settings: Settings, homes: Homes | None = None) -> None:
        self.settings = settings
        self.homes = homes  # None: one process, nothing recorded in the database
        self.sandbox = Sandbox(
            sandbox_limits(settings),
            settings.code_sandbox_uid_base,
            settings.code_use_bwrap,
            settings.code_bwrap_path,
        )
        self.cgroups = cgroup_limits(settings)
        self.pool = KernelPool(settings, self.sandbox, self.cgroups)
        self.sessions = SessionTable(settings.code_max_sessions)
        # Called (project, session key, usage key) when a session starts: the server records it as usage,
        # once per usage key.
        self.on_session_started: Callable[[str, str, str], None] | None = None
        self._lock = threading.Lock()  # starts the background loops once
        self._closed = threading.Event()
        self._reaper: threading.Thread | None = None
        self._home_watch: threading.Thread | None = None
        self._wake = threading.Event()

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
        reaped = reaper.reap_orphans(self.pool.kill_orphan_uid)
        if reaped:
            log.warning("code interpreter: killed %d kernel(s) left behind by servers that died", reaped)
        self.cgroups.probe()  # also kills what runs in the cgroups of servers that died, and removes them
        try:
            self.pool.ensure_root()
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
        self._start_loops()
        self.pool.build_font_cache()
        self.pool.fill()

    def _start_loops(self) -> None:
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
        self.pool.closing()
        sessions = self.sessions.clear()
        for session in sessions:  # an execution under way ends at once: its kernel dies under it
            session.closed = True
            if session.kernel is not None:
                session.kernel.signal_kill()
        for session in sessions:
            with session.lock:
                self._end_session(session)
        if self.homes is not None:
            try:
                self.homes.release_all()
            except Exception as exc:  # stopping: the rows name a worker whose lease runs out
                log.warning("code interpreter: could not remove this worker's kernel homes: %s", exc)
        self.pool.close()

    def sandbox_report(self) -> list[tuple[str, bool, str]]:
        return self.sandbox.report() + self.cgroups.report()

    def sessions_started(self, project: str) -> int:
        return self.sessions.started(project)

    def close_session(self, key: str, release: bool = True) -> None:
        """Ends the session of a thread or container here. `release=False` leaves its kernel home alone:
        the thread delete hook runs inside the deleting transaction, which removes the row (cascade)."""
        session = self.sessions.pop(key)
        if session is None:
            return
        session.closed = True
        if session.kernel is not None and session.lock.locked():  # an execution under way ends now
            session.kernel.signal_kill()
        with session.lock:
            self._end_session(session)
        log.info("code interpreter: session of %s closed", key)
        if release:
            self._release_home(session)

    def wake(self, _payload: str = "") -> None:
        """Checks the kernel homes now (a thread was deleted somewhere: a database notification)."""
        self._wake.set()

    # ---- files of a live session ----------------------------------------------------------------------
    def put_file(self, key: str, path: str, content: bytes) -> bool:
        """Writes (or replaces) a file in the /mnt/data of the key's session, if it is live here (waits
        for an execution under way). Whether it was; if not, nothing is written."""
        session = self.sessions.get(key)
        if session is None:
            return False
        with session.lock:
            if session.closed or session.kernel is None:
                return False
            rel = files.safe_path(path)
            files.write_file(session.kernel.plan.data_dir, rel, content, session.kernel.plan.uid)
            session.inputs[rel] = len(content)
            return True

    def remove_file(self, key: str, path: str) -> bool:
        """Removes a file from the /mnt/data of the key's session, if it is live here. Whether it was."""
        session = self.sessions.get(key)
        if session is None:
            return False
        with session.lock:
            if session.closed or session.kernel is None:
                return False
            rel = files.safe_path(path)
            files.remove_file(session.kernel.plan.data_dir, rel)
            session.inputs.pop(rel, None)
            return True

    # ---- execution ---------------------------------------------------------------------------------
    def execute(
        self, project: str, key: str, code: str, input_files: list[tuple[str, bytes]]
    ) -> ExecutionResult:
        """Runs `code` in the session of `key` (a thread id or a container id), first copying the input
        files not yet in its /mnt/data (by relative path)."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise CodeInterpreterUnavailable(reason)
        self._start_loops()
        session = self._session(project, key)
        with session.lock:
            if session.closed:  # closed between lookup and lock: start afresh
                return self.execute(project, key, code, input_files)
            session.last_used = time.monotonic()
            try:
                moved = self._take_home(session)
            except SessionGone as gone:
                self._drop_locked(session)
                return ExecutionResult(logs=gone.note, error=True)
            if moved and session.homed:  # another worker ran this session meanwhile: this kernel is stale
                log.info("code interpreter: home of %s moved away and back: new session", key)
                self._drop_locked(session)
                return self.execute(project, key, code, input_files)
            if moved and self.homes is not None:
                session.notes.append(self.homes.moved_note(key))
            session.homed = True
            try:
                return self._execute_locked(session, code, input_files)
            finally:
                session.last_used = time.monotonic()

    def _execute_locked(
        self, session: Session, code: str, input_files: list[tuple[str, bytes]]
    ) -> ExecutionResult:
        notes, session.notes = session.notes, []
        session.idle_cap = None
        if session.kernel is not None and not session.kernel.alive():
            notes.append(self._kernel_died(session, session.kernel, "while idle"))
        if session.kernel is None:
            try:
                session.kernel = self.pool.acquire()
            except (KernelStartError, RuntimeError, OSError) as exc:
                log.error("code interpreter: no kernel for %s: %s", session.key, exc)
                return ExecutionResult(
                    logs="\n".join([*notes, f"The code interpreter could not start: {exc}"]), error=True
                )
        kernel = session.kernel
        session.inputs.update(files.place_inputs(kernel.plan.data_dir, kernel.plan.uid, input_files))
        before = files.snapshot(kernel.plan.data_dir)
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
                "code interpreter: kernel of %s did not stop after an interrupt: restarting", session.key
            )
            notes.append(
                "The code did not stop after the interrupt: the kernel was restarted, its variables are lost."
            )
            self._replace(session)
        elif out.died or not kernel.alive():
            out.error = True
            notes.append(self._kernel_died(session, kernel, "during the execution"))
        max_bytes = self.settings.code_max_file_mb * 1024 * 1024
        written, removed = files.written_and_removed(kernel.plan.data_dir, before, max_bytes, kernel.plan.uid)
        for rel in removed:
            session.inputs.pop(rel, None)
        if session.kernel is not None and session.kernel.alive():
            session.idle_cap = DiskCap(
                session.kernel, self.settings.code_session_mb, sum(session.inputs.values())
            )
        if notes:
            logs = (logs.rstrip("\n") + "\n" if logs.strip() else "") + "\n".join(notes)
        return ExecutionResult(logs=logs, images=out.images, files=written, error=out.error, removed=removed)

    def _kernel_died(self, session: Session, kernel: Kernel, when: str) -> str:
        if kernel.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                kernel.proc.wait(timeout=2)
        reason = kernel.exit_reason()
        if session.closed or self._closed.is_set():
            self._replace(session)  # only cleans up
            return "The code interpreter session was closed during the execution."
        log.warning("code interpreter: kernel of %s died %s (%s): replacing it", session.key, when, reason)
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
        old, session.kernel = session.kernel, None
        if old is not None:
            keep = not (session.closed or self._closed.is_set())
            session.kernel = self.pool.restart(old, keep_data=keep, key=session.key)
            if session.kernel is None:
                session.inputs.clear()

    # ---- sessions ------------------------------------------------------------------------------------
    def _session(self, project: str, key: str) -> Session:
        session, started, evict = self.sessions.open(project, key)
        if started:
            log.info("code interpreter: new session for %s (project %s)", key, project)
            if self.on_session_started is not None:
                self.on_session_started(project, key, session.usage_key)
        for old in evict:
            self.close_session(old.key)
        return session

    def _drop_locked(self, session: Session) -> None:
        """Ends a session whose lock the caller holds (its home is left to whoever holds it now)."""
        self.sessions.remove(session)
        self._end_session(session)

    def _end_session(self, session: Session) -> None:
        session.closed = True
        if session.kernel is not None:
            self.pool.discard(session.kernel)
            session.kernel = None

    def _reap_loop(self) -> None:
        idle = self.settings.kernel_idle_seconds
        while not self._closed.wait(min(max(idle / 4, 0.2), 1.0)):
            stop_idle_writers(self.sessions.items().values())
            for session in self.sessions.idle(idle):
                log.info("code interpreter: session of %s idle for %ss: shutting it down", session.key, idle)
                self.sessions.remove(session)
                with session.lock:
                    self._end_session(session)
                self._release_home(session)

    # ---- homes -----------------------------------------------------------------------------------------
    def _take_home(self, session: Session) -> bool:
        """Records this worker as the session's kernel home (on every execution: it refreshes its time);
        True when the home named another kernel (another worker, or an earlier session of this one)."""
        if self.homes is None:
            return False
        try:
            previous = self.homes.take(session.key)
        except SessionGone:
            raise
        except Exception as exc:  # the database is out past the retries: the code still runs here
            log.warning("code interpreter: kernel home of %s not recorded: %s", session.key, exc)
            return False  # the home check writes the row when the database is back
        return previous is not None and (previous != self.homes.worker_id or not session.homed)

    def _release_home(self, session: Session) -> None:
        if self.homes is None or session.key in self.sessions:  # a new session took the home meanwhile
            return
        try:
            self.homes.release(session.key)
        except Exception as exc:  # the home check adopts or the claim outlives a dead worker
            log.warning("code interpreter: kernel home of %s not removed: %s", session.key, exc)

    def _home_loop(self) -> None:
        """Shuts down the sessions held here whose thread or container is gone (on any node) or whose
        kernel home moved to another worker; writes the missing home of the others. Runs every
        code_home_check_seconds, or at once when woken."""
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
        sessions = self.sessions.items()
        if not sessions:
            return
        used = {key: session.last_used for key, session in sessions.items()}
        found = self.homes.check(sessions)
        orphans = []
        for key, session in sessions.items():
            home = found.homes.get(key)
            if key not in found.existing:
                kind, how = (
                    ("container", "expired or was deleted")
                    if is_container(key)
                    else ("thread", "was deleted")
                )
                log.info("code interpreter: %s %s %s: shutting its kernel down", kind, key, how)
                self.close_session(key, release=False)
            elif not session.homed or session.lock.locked():
                continue  # its execution writes the row
            elif home is not None and home != self.homes.worker_id:
                if not session.lock.acquire(blocking=False):
                    continue  # an execution started: it takes the row back
                try:
                    if session.closed or session.last_used != used[key]:
                        continue  # it ran since the read: the row may name this worker again
                    log.info("code interpreter: kernel home of %s moved to %s: shutting down", key, home)
                    self._drop_locked(session)
                finally:
                    session.lock.release()
            elif home is None:
                orphans.append(key)
        if orphans:
            self.homes.adopt(orphans)
