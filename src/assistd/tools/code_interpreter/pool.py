"""Kernels for sessions: where they live on the host, which uid each runs as, the warm ones started ahead.

Every kernel gets a directory under the root (its run dir: connection file, sockets, HOME) and a data dir
(/mnt/data), and a slot: a uid of its own, held by an flock on a machine-wide lock file for the kernel's
life, so that several servers never share one. `kernel_pool_size` kernels are started ahead, with the
preload imported, so a session's first execution does not wait for a cold start. A dead kernel's
replacement (`restart`) keeps the session's data dir.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from assistd.config import Settings
from assistd.tools.code_interpreter import reaper
from assistd.tools.code_interpreter.cgroups import Cgroups
from assistd.tools.code_interpreter.files import chown_tree
from assistd.tools.code_interpreter.kernel import Kernel, KernelStartError, kill_uid, uid_has_processes
from assistd.tools.code_interpreter.sandbox import UID_RANGE, KernelPlan, Sandbox

log = logging.getLogger("assistd.code_interpreter")


class KernelPool:
    def __init__(self, settings: Settings, sandbox: Sandbox, cgroups: Cgroups) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.cgroups = cgroups
        self._lock = threading.Lock()
        self._warm: list[Kernel] = []
        self.filling = 0  # warm kernels being started
        self._slot_locks: dict[int, int] = {}  # slot -> fd holding its lock file
        self._root: Path | None = None
        self._closed = threading.Event()
        self._font_cache: list[Path] = []
        # bwrap --die-with-parent ties a kernel to the thread that forked it: one long-lived thread forks all
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="code-kernel-spawner")

    def warm_count(self) -> int:
        with self._lock:
            return len(self._warm)

    # ---- kernels -------------------------------------------------------------------------------------
    def acquire(self) -> Kernel:
        """A warm kernel if one is alive (and the pool is refilled), else a cold start."""
        kernel = None
        with self._lock:
            while self._warm:
                candidate = self._warm.pop(0)
                if candidate.alive():
                    kernel = candidate
                    break
                threading.Thread(target=self.discard, args=(candidate,), daemon=True).start()
        self.refill_async()
        if kernel is not None:
            return kernel
        return self._new_kernel(preload=False)

    def restart(self, old: Kernel, keep_data: bool, key: str) -> Kernel | None:
        """Ends `old` and, if `keep_data`, starts a kernel over its data dir (the session's files stay);
        None when none could be started (the data dir is then removed: the next execution starts afresh)."""
        old.kill()
        shutil.rmtree(old.plan.run_dir.parent, ignore_errors=True)  # its run dir; the data dir is apart
        self._free_slot(old.slot)
        if not keep_data or self._closed.is_set():
            shutil.rmtree(old.plan.data_dir, ignore_errors=True)
            return None
        slot = None
        try:
            slot = self._slot()
            plan = self._plan(slot, data_dir=old.plan.data_dir)
            chown_tree(old.plan.data_dir, plan.uid)
            kernel = Kernel(self.sandbox, plan, slot, self._spawner, self.cgroups)
        except (KernelStartError, OSError) as exc:
            log.error("code interpreter: no replacement kernel for %s: %s", key, exc)
            if slot is not None:
                self._free_slot(slot)
            shutil.rmtree(old.plan.data_dir, ignore_errors=True)
            return None
        try:
            kernel.start()
        except (KernelStartError, RuntimeError, OSError) as exc:
            log.error("code interpreter: replacement kernel for %s failed: %s", key, exc)
            self.discard(kernel)  # the session's files go with it
            return None
        return kernel

    def discard(self, kernel: Kernel) -> None:
        """Kills the kernel and removes its directories, the session directory included."""
        kernel.kill()
        shutil.rmtree(kernel.plan.run_dir.parent, ignore_errors=True)
        shutil.rmtree(kernel.plan.data_dir, ignore_errors=True)
        self._free_slot(kernel.slot)

    def _new_kernel(self, preload: bool) -> Kernel:
        self.ensure_root()
        slot = self._slot()
        plan = self._plan(slot)
        kernel = Kernel(self.sandbox, plan, slot, self._spawner, self.cgroups)
        try:
            kernel.start()
            if preload and self.settings.code_preload:
                kernel.run(self.settings.code_preload, 60, 1000, silent=True)
        except Exception:
            self.discard(kernel)
            raise
        return kernel

    # ---- the warm pool -------------------------------------------------------------------------------
    def fill(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                if len(self._warm) + self.filling >= self.settings.kernel_pool_size:
                    return
                self.filling += 1
            try:
                kernel = self._new_kernel(preload=True)
            except (KernelStartError, RuntimeError) as exc:  # RuntimeError: shut down meanwhile
                if not self._closed.is_set():
                    log.error("code interpreter: could not pre-start a kernel: %s", exc)
                return
            finally:
                with self._lock:
                    self.filling -= 1
            with self._lock:
                if not self._closed.is_set():
                    self._warm.append(kernel)
                    kernel = None
            if kernel is not None:
                self.discard(kernel)

    def refill_async(self) -> None:
        if not self._closed.is_set():
            threading.Thread(target=self.fill, name="code-pool-fill", daemon=True).start()

    def close(self) -> None:
        """No more kernels: the warm ones end, the root goes (unless it is the operator's)."""
        self._closed.set()
        with self._lock:
            warm, self._warm = self._warm, []
        for kernel in warm:
            self.discard(kernel)
        self._spawner.shutdown(wait=False)
        self.cgroups.close()
        if self._root is not None and self.settings.code_sessions_dir is None:
            shutil.rmtree(self._root, ignore_errors=True)

    def closing(self) -> None:
        """Marks the pool shut: nothing new starts (call `close` once the sessions have ended)."""
        self._closed.set()

    # ---- directories, uids ---------------------------------------------------------------------------
    def ensure_root(self) -> Path:
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

    def build_font_cache(self) -> None:
        """matplotlib scans the system fonts on its first import in a new HOME (~0.7 s). The server builds
        that cache once, itself (a kernel-built cache could be poisoned), and every new kernel gets a copy."""
        cache = self.ensure_root() / "fontcache"
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

    def _slot(self) -> int:
        """A slot (uid offset) free on this machine: other server processes use the same uid range, so a
        slot is held by an flock on a file for the kernel's life (released by the kernel's end or ours)."""
        with self._lock:
            if not self.sandbox.setuid:
                slot = max(self._slot_locks, default=-1) + 1
                self._slot_locks[slot] = -1
                return slot
            lock_dir = uid_lock_dir()
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
        root = self.ensure_root()
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
            chown_tree(run_dir, uid)
            os.chown(data_dir, uid, uid)
        run_dir.chmod(0o700)
        data_dir.chmod(0o700)
        return KernelPlan(
            run_dir=run_dir, data_dir=data_dir, uid=uid, connection_file=run_dir / "kernel.json"
        )

    def kill_orphan_uid(self, uid: int) -> None:
        """Ends the processes of a dead server's kernel uid, unless a live server holds that uid's slot."""
        slot = uid - self.sandbox.uid_base
        if not (0 <= slot < UID_RANGE) or not self.sandbox.is_root:
            return
        try:
            lock = uid_lock_dir() / f"{uid}.lock"
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


def uid_lock_dir() -> Path:
    """Where the kernel uids' lock files live (machine-wide: every server of this uid uses it)."""
    path = Path(tempfile.gettempdir()) / "assistd-uids"
    if not reaper.private_dir(path):
        raise KernelStartError(f"{path} is not a private directory of this uid: no kernel uid can be held")
    return path


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
