"""One ipykernel process in its sandbox, spoken to over IPC sockets with jupyter-client.

`Kernel.start()` spawns the process (the argv comes from the Sandbox) with an ``ipc`` connection file in its
run directory, then waits until it answers. `Kernel.run(code, timeout)` executes one cell and gathers what
the cell printed and displayed; on timeout it interrupts the kernel (control-channel ``interrupt_request``),
and if the cell does not stop within a short grace it reports ``stuck`` so the caller replaces the kernel.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import queue
import secrets
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from assistd.tools.code_interpreter import reaper
from assistd.tools.code_interpreter.cgroups import Cgroups, KernelCgroup, join_command
from assistd.tools.code_interpreter.sandbox import KernelPlan, Sandbox

log = logging.getLogger("assistd.code_interpreter")

INTERRUPT_GRACE_SECONDS = 3.0
WATCH_SECONDS = 0.1  # how often a running cell's watch (the disk cap) is called
FLOOD_CHECK_SECONDS = 0.25  # how often a running cell's processes are counted (a fork bomb)

# Called while a cell runs: a reason to stop it, or None.
Watch = Callable[[], "str | None"]


class KernelStartError(RuntimeError):
    pass


class LogBuffer:
    """Text kept within a size limit: the head and the tail survive, the middle is dropped with a note."""

    def __init__(self, limit: int) -> None:
        self.head_limit = max(limit * 3 // 4, 1)
        self.tail_limit = max(limit - self.head_limit, 1)
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.dropped = 0

    def write(self, text: str) -> None:
        if self.head_len < self.head_limit:
            take = text[: self.head_limit - self.head_len]
            self.head.append(take)
            self.head_len += len(take)
            text = text[len(take) :]
        if not text:
            return
        self.tail.append(text)
        self.tail_len += len(text)
        while self.tail_len - len(self.tail[0]) >= self.tail_limit:
            self.dropped += len(self.tail[0])
            self.tail_len -= len(self.tail.popleft())

    def text(self) -> str:
        tail = "".join(self.tail)
        extra = max(self.tail_len - self.tail_limit, 0)
        dropped = self.dropped + extra
        tail = tail[extra:]
        head = "".join(self.head)
        if not dropped:
            return head + tail
        return f"{head}\n[... output truncated: {dropped} characters omitted ...]\n{tail}"


@dataclass
class CellOutput:
    logs: LogBuffer
    images: list[bytes] = field(default_factory=list)
    error: bool = False
    timed_out: bool = False
    stuck: bool = False  # did not stop after the interrupt: the kernel must be replaced
    stopped: str | None = None  # why `watch` stopped the cell (interrupted like a timeout)
    died: bool = False  # the kernel process exited during the cell


class Kernel:
    def __init__(
        self, sandbox: Sandbox, plan: KernelPlan, slot: int, spawner: Executor, cgroups: Cgroups | None = None
    ) -> None:
        self.sandbox = sandbox
        self.cgroups = cgroups
        self.cgroup: KernelCgroup | None = None  # its memory/cpu groups, where cgroups are on
        # bwrap --die-with-parent ties the kernel to the *thread* that forked it (PR_SET_PDEATHSIG):
        # every kernel is spawned from one long-lived thread, never from a short-lived worker.
        self.spawner = spawner
        self.plan = plan
        self.slot = slot
        self.proc: subprocess.Popen | None = None
        self.client: BlockingKernelClient | None = None
        self.started_at = 0.0
        self.host_pid: int | None = None  # the ipykernel process (bwrap and the launcher sit above it)
        self.record: Path | None = None  # this kernel in the registry of live kernels (see reaper)

    # ---- life cycle --------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        plan = self.plan
        write_connection_file(
            str(plan.connection_file),
            transport="ipc",
            ip=str(plan.run_dir / "k"),
            key=secrets.token_hex(16).encode(),
            shell_port=1,
            iopub_port=2,
            stdin_port=3,
            control_port=4,
            hb_port=5,
        )
        if plan.uid is not None:
            os.chown(plan.connection_file, plan.uid, plan.uid)
        if self.cgroups is not None:
            try:
                self.cgroup = self.cgroups.create(plan.run_dir.parent.name)
            except OSError as exc:  # cgroups are on: a kernel without its limits is not started
                raise KernelStartError(f"could not create the kernel's cgroup: {exc}") from exc
        stderr_log = open(plan.run_dir / "kernel.log", "ab")  # noqa: SIM115 (owned by the process)
        try:
            self.proc = self.spawner.submit(
                subprocess.Popen,
                join_command(self.cgroup, self.sandbox.command(plan)),
                stdin=subprocess.DEVNULL,
                stdout=stderr_log,
                stderr=stderr_log,
                env={"PATH": "/usr/bin:/bin"},
                cwd="/",
                start_new_session=True,
                close_fds=True,
            ).result()
        finally:
            stderr_log.close()
        self.record = reaper.record(self.proc.pid, plan.uid)
        self.started_at = time.monotonic()
        client = BlockingKernelClient(connection_file=str(plan.connection_file))
        client.load_connection_file()
        client.start_channels(hb=False)
        self.client = client
        try:
            self._wait_ready(timeout)
        except Exception:
            self.kill()
            raise

    def _wait_ready(self, timeout: float) -> None:
        assert self.client is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise KernelStartError(f"kernel exited at start: {self.exit_reason()}; {self.log_tail()}")
            try:
                self.client.wait_for_ready(timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
                self.host_pid = self._find_kernel_pid()
                return
            except RuntimeError:
                continue
        raise KernelStartError(f"kernel not ready after {timeout:.0f}s; {self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_reason(self) -> str:
        if self.proc is None or self.proc.returncode is None:
            return "still running"
        code = self.proc.returncode
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        if code in (128 + 9, 128 + 24):  # bwrap reports a signal death of its child as 128+n
            return f"killed by {signal.Signals(code - 128).name}"
        return f"exit code {code}"

    def log_tail(self, chars: int = 400) -> str:
        try:
            data = (self.plan.run_dir / "kernel.log").read_bytes()[-chars:]
        except OSError:
            return ""
        return data.decode("utf-8", "replace").strip()

    def kill(self) -> None:
        """Ends the kernel and everything it started (bwrap: the whole pid namespace goes with it)."""
        if self.client is not None:
            with contextlib.suppress(Exception):  # the sockets of a dead kernel
                self.client.stop_channels()
            self.client = None
        self.signal_kill()
        if self.cgroup is not None:
            self.cgroup.kill_all()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.error("code interpreter: kernel pid %s did not exit after SIGKILL", self.proc.pid)
        if self.plan.uid is not None and not self.sandbox.bwrap:
            kill_uid(self.sandbox.python, self.plan.uid)
        if self.cgroup is not None:
            self.cgroup.kill_all()
            self.cgroup.remove()
            self.cgroup = None
        reaper.forget(self.record)
        self.record = None

    def signal_kill(self) -> None:
        """SIGKILL to the kernel's process group only: safe while another thread is executing on it (that
        thread sees the kernel die and returns)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()

    # ---- execution ---------------------------------------------------------------------------------
    def run(
        self, code: str, timeout: float, log_limit: int, silent: bool = False, watch: Watch | None = None
    ) -> CellOutput:
        """Runs one cell. `watch`, called about every WATCH_SECONDS while the cell runs, may return a reason
        to stop it (the session's disk cap): the cell is then interrupted as on a timeout."""
        client = self.client
        assert client is not None
        out = CellOutput(logs=LogBuffer(log_limit))
        self._drain(client)
        msg_id = client.execute(code, silent=silent, store_history=not silent, allow_stdin=False)
        if not self._collect(client, msg_id, out, time.monotonic() + timeout, watch) and not out.died:
            out.timed_out = out.stopped is None
            out.error = True
            self._interrupt(client)
            grace = min(INTERRUPT_GRACE_SECONDS, max(1.0, timeout / 2))
            if not self._collect(client, msg_id, out, time.monotonic() + grace):
                out.stuck = not out.died
        if not out.stuck and not out.died and (self.sweep() or self._zombie_children()):
            self._reap_children(client)
        return out

    # ---- processes the code left behind ----------------------------------------------------------------
    def _find_kernel_pid(self) -> int | None:
        if self.proc is None:
            return None
        for pid in [self.proc.pid, *reaper.descendants(self.proc.pid)]:
            try:
                if b"\0-m\0ipykernel_launcher\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except OSError:
                continue
        return None

    def strays(self) -> list[int]:
        """Processes the code started that are still there: everything of the kernel's uid but the kernel
        (double forks and setsid included); without a uid of its own, the kernel's descendants."""
        if self.host_pid is None:
            return []
        if self.plan.uid is None:
            return [pid for pid in reaper.descendants(self.host_pid) if not _is_zombie(str(pid))]
        found = []
        with os.scandir("/proc") as entries:
            for entry in entries:
                if entry.name.isdigit() and int(entry.name) != self.host_pid:
                    try:
                        if entry.stat().st_uid == self.plan.uid and not _is_zombie(entry.name):
                            found.append(int(entry.name))
                    except OSError:
                        continue
        return found

    def sweep(self) -> int:
        """Kills what the cell left running (processes do not outlive an execution). Returns how many."""
        killed = 0
        deadline = time.monotonic() + 5
        # A fork bomb keeps forking while it is being killed, and a killed process of a throttled cgroup
        # takes a while to exit: kill until none is left (bounded).
        while time.monotonic() < deadline:
            pids = self.strays()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            time.sleep(0.01)
        if killed:
            log.info("code interpreter: killed %d process(es) left behind by an execution", killed)
            self._wait_reaped()
        return killed

    def _wait_reaped(self, timeout: float = 10.0) -> None:
        """Killed processes count against the uid's RLIMIT_NPROC until their parent reaps them: orphans are
        reaped by bwrap's init, which may be held back a while (its cgroup's CPU quota, a loaded machine).
        Waits, bounded, until only zombies of the kernel itself are left (`_reap_children` takes those)."""
        if self.plan.uid is None or self.host_pid is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._unreaped():
            time.sleep(0.02)

    def _unreaped(self) -> bool:
        with os.scandir("/proc") as entries:
            for entry in entries:
                if not entry.name.isdigit() or int(entry.name) == self.host_pid:
                    continue
                try:
                    if entry.stat().st_uid != self.plan.uid:
                        continue
                    ppid = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid != self.host_pid:
                    return True
        return False

    def _zombie_children(self) -> bool:
        """Children of the kernel that died on their own (a fork bomb's, say) and wait to be reaped."""
        if self.host_pid is None:
            return False
        return any(_is_zombie(str(pid)) for pid in _children(self.host_pid))

    def _reap_children(self, client: BlockingKernelClient) -> None:
        """Killed children stay zombies (counted by RLIMIT_NPROC) until the kernel waits for them."""
        code = (
            "import os as _os\ntry:\n    while _os.waitpid(-1, _os.WNOHANG)[0]: pass\n"
            "except ChildProcessError: pass\ndel _os"
        )
        self._drain(client)
        msg_id = client.execute(code, silent=True, store_history=False, allow_stdin=False)
        self._collect(client, msg_id, CellOutput(logs=LogBuffer(100)), time.monotonic() + 5)

    def _collect(
        self,
        client: BlockingKernelClient,
        msg_id: str,
        out: CellOutput,
        deadline: float,
        watch: Watch | None = None,
    ) -> bool:
        """Reads iopub until the cell's idle status (True), the deadline, the kernel's death or a reason
        from `watch` (False)."""
        next_watch = time.monotonic() + WATCH_SECONDS
        next_flood_check = time.monotonic() + FLOOD_CHECK_SECONDS
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return False
            if watch is not None and now >= next_watch:
                next_watch = now + WATCH_SECONDS
                if (reason := watch()) is not None:
                    out.stopped = reason
                    return False
            try:
                msg = client.get_iopub_msg(timeout=min(remaining, WATCH_SECONDS))
            except queue.Empty:
                if not self.alive():
                    out.died = out.error = True
                    return False
                if time.monotonic() >= next_flood_check:
                    next_flood_check = time.monotonic() + FLOOD_CHECK_SECONDS
                    self._check_process_flood(out)
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if self._take(msg, out):
                return True

    def _check_process_flood(self, out: CellOutput) -> None:
        """A fork bomb fills RLIMIT_NPROC and leaves the kernel unable to answer: once half the limit is
        reached mid-execution, the extra processes are killed at once rather than at the timeout."""
        if self.plan.uid is None:
            return
        strays = self.strays()
        if len(strays) >= self.sandbox.limits.processes // 2:
            killed = self.sweep()
            out.error = True
            out.logs.write(f"\n[{killed} processes killed: the code started too many processes]\n")

    @staticmethod
    def _take(msg: dict, out: CellOutput) -> bool:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status":
            return content.get("execution_state") == "idle"
        if kind == "stream":
            out.logs.write(content.get("text", ""))
        elif kind == "error":
            out.error = True
            out.logs.write(
                "\n".join(content.get("traceback") or [f"{content.get('ename')}: {content.get('evalue')}"])
            )
            out.logs.write("\n")
        elif kind in ("display_data", "execute_result"):
            data = content.get("data", {})
            if "image/png" in data:
                out.images.append(base64.b64decode(data["image/png"]))
            elif "text/plain" in data:
                out.logs.write(data["text/plain"] + "\n")
        return False

    def _interrupt(self, client: BlockingKernelClient) -> None:
        try:
            client.control_channel.send(client.session.msg("interrupt_request", content={}))
        except Exception as exc:
            log.warning("code interpreter: interrupt failed: %s", exc)

    @staticmethod
    def _drain(client: BlockingKernelClient) -> None:
        for get in (client.get_shell_msg, client.get_iopub_msg, client.get_control_msg):
            while True:
                try:
                    get(timeout=0)
                except queue.Empty:
                    break


def _is_zombie(pid: str) -> bool:
    """A killed process stays in /proc until its parent waits for it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def _children(parent: int) -> list[int]:
    return [pid for pid in reaper.descendants(parent) if _ppid(pid) == parent]


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def uid_has_processes(uid: int) -> bool:
    with os.scandir("/proc") as entries:
        for entry in entries:
            try:
                if entry.name.isdigit() and entry.stat().st_uid == uid:
                    return True
            except OSError:
                continue
    return False


def kill_uid(python: str, uid: int) -> None:
    """Without a pid namespace, a kernel's escaped processes (setsid, double fork) share its uid: a helper
    that becomes that uid and kills everything it may signal ends them all."""
    code = (
        f"import os,signal\nos.setgroups([]); os.setgid({uid}); os.setuid({uid})\nos.kill(-1, signal.SIGKILL)"
    )
    try:
        subprocess.run([python, "-c", code], timeout=10, capture_output=True, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("code interpreter: could not sweep uid %s: %s", uid, exc)
