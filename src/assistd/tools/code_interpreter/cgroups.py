"""A cgroup per kernel, where the cgroup tree is writable: the memory of a kernel and of everything it
starts together (rlimits count one process at a time), and its CPU share.

The server's own cgroup (from /proc/self/cgroup) gets a group ``assistd-<server pid>-<random>``, and each
kernel a group ``k-<name>`` below it, created before the kernel is spawned; the kernel's first process joins
it before it execs bwrap or the launcher (`join_command`), so nothing the code starts escapes it. cgroup v2 is
used when its memory and cpu controllers can be enabled there; else cgroup v1 (memory and cpu
hierarchies); else the limits are off and `report()` says why. Groups of servers that are gone are removed
at start.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("assistd.code_interpreter")

CPU_PERIOD_US = 100_000

# The kernel's first process: joins every cgroup given before "--", then execs the command after it.
JOIN_SH = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"'


@dataclass
class KernelCgroup:
    dirs: list[Path]
    procs: list[Path] = field(default_factory=list)

    def remove(self) -> None:
        """Removes the kernel's groups once its processes are gone (they leave a group a moment after
        they die)."""
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
            else:
                log.warning("code interpreter: could not remove cgroup %s", d)

    def kill_all(self) -> None:
        """SIGKILL to every process in the kernel's groups: what the code started cannot leave them."""
        for procs in self.procs:
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(pid), signal.SIGKILL)

    def counter(self, filename: str, key: str) -> int:
        """A "key value" line of a cgroup file (memory.events, memory.oom_control, cpu.stat), summed over the
        kernel's groups that have that file."""
        total = 0
        for d in self.dirs:
            with contextlib.suppress(OSError):
                for line in (d / filename).read_text().splitlines():
                    name, _, value = line.partition(" ")
                    if name == key and value.strip().isdigit():
                        total += int(value)
        return total

    def oom_kills(self) -> int:
        return self.counter("memory.events", "oom_kill") + self.counter("memory.oom_control", "oom_kill")


class Cgroups:
    def __init__(self, memory_bytes: int, cpu_cores: float, enabled: bool = True) -> None:
        self.memory_bytes = memory_bytes
        self.cpu_cores = cpu_cores
        self.enabled = enabled
        self.version: str | None = None
        self.groups: dict[str, Path] = {}  # controller -> this server's group
        self.why = "disabled by settings (code_use_cgroups=false)" if not enabled else ""
        self._probed = False
        self._lock = threading.Lock()
        # One group per interpreter (a process may hold several: tests), named after the server's pid.
        self.name = f"assistd-{os.getpid()}-{secrets.token_hex(3)}"

    # ---- set up -------------------------------------------------------------------------------------
    def probe(self) -> None:
        """Finds a writable cgroup tree and makes this server's group in it (once)."""
        with self._lock:
            if not self._probed and self.enabled:
                self._probe()
                self._probed = True

    def _probe(self) -> None:
        mounts, own = _mounts(), _own_paths()
        reasons = []
        for attempt in (self._try_v2, self._try_v1):
            try:
                reason = attempt(mounts, own)
            except OSError as exc:
                reason = f"{exc.strerror or exc}: {exc.filename}"
            if reason is None:
                return
            reasons.append(reason)
        self.groups = {}
        self.why = "; ".join(reasons)

    def _try_v2(self, mounts: dict[str, Path], own: dict[str, str]) -> str | None:
        """None when this server's v2 group is ready, else why not."""
        if "cgroup2" not in mounts or "" not in own:
            return "no cgroup v2 tree"
        base = _join(mounts["cgroup2"], own[""])
        available = (base / "cgroup.controllers").read_text().split()
        if not {"memory", "cpu"} <= set(available):
            return (
                f"cgroup v2 ({mounts['cgroup2']}) offers no memory/cpu controller here "
                f"(only: {' '.join(available) or 'none'})"
            )
        _remove_stale(base)
        group = base / self.name
        group.mkdir(exist_ok=True)
        try:
            _enable_controllers(base, group)
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
            raise
        self.version, self.groups = "v2", {"memory": group, "cpu": group}
        return None

    def _try_v1(self, mounts: dict[str, Path], own: dict[str, str]) -> str | None:
        if "memory" not in mounts or "cpu" not in mounts or "memory" not in own or "cpu" not in own:
            return "no cgroup v1 memory and cpu hierarchies"
        groups = {}
        for controller in ("memory", "cpu"):
            base = _join(mounts[controller], own[controller])
            _remove_stale(base)
            group = base / self.name
            group.mkdir(exist_ok=True)
            groups[controller] = group
        self.version, self.groups = "v1", groups
        return None

    @property
    def active(self) -> bool:
        self.probe()
        return bool(self.groups)

    # ---- per kernel ---------------------------------------------------------------------------------
    def create(self, name: str) -> KernelCgroup | None:
        """The groups of one kernel, with its limits written; None when cgroups are off."""
        if not self.active:
            return None
        quota = max(int(self.cpu_cores * CPU_PERIOD_US), 1000)
        if self.version == "v2":
            d = self.groups["memory"] / f"k-{name}"
            d.mkdir()
            cg = KernelCgroup(dirs=[d], procs=[d / "cgroup.procs"])
            try:
                (d / "memory.max").write_text(str(self.memory_bytes))
                with contextlib.suppress(FileNotFoundError):  # no swap accounting: nothing to cap
                    (d / "memory.swap.max").write_text("0")
                (d / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
            except OSError:
                cg.remove()
                raise
            return cg
        mem = self.groups["memory"] / f"k-{name}"
        cpu = self.groups["cpu"] / f"k-{name}"
        mem.mkdir()
        cpu.mkdir()
        cg = KernelCgroup(dirs=[mem, cpu], procs=[mem / "cgroup.procs", cpu / "cgroup.procs"])
        try:
            (mem / "memory.limit_in_bytes").write_text(str(self.memory_bytes))
            with contextlib.suppress(OSError):  # memory+swap: only with swap accounting
                (mem / "memory.memsw.limit_in_bytes").write_text(str(self.memory_bytes))
            (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota))
        except OSError:
            cg.remove()
            raise
        return cg

    def close(self) -> None:
        for group in set(self.groups.values()):
            for child in group.glob("k-*"):
                with contextlib.suppress(OSError):
                    child.rmdir()
            with contextlib.suppress(OSError):
                group.rmdir()

    def report(self) -> list[tuple[str, bool, str]]:
        if not self.active:
            return [
                ("cgroup memory cap", False, f"no writable cgroup tree: {self.why}"),
                ("cgroup cpu share", False, f"no writable cgroup tree: {self.why}"),
            ]
        where = self.groups["memory"]
        return [
            (
                "cgroup memory cap",
                True,
                f"{self.memory_bytes // (1024 * 1024)} MB for a kernel and all it starts (cgroup "
                f"{self.version}, {where})",
            ),
            ("cgroup cpu share", True, f"{self.cpu_cores:g} core(s) per kernel (cgroup {self.version})"),
        ]


def join_command(cgroup: KernelCgroup | None, argv: list[str]) -> list[str]:
    """argv run by a first process that has joined the kernel's groups."""
    if cgroup is None:
        return argv
    return ["/bin/sh", "-c", JOIN_SH, "sh", *map(str, cgroup.procs), "--", *argv]


def _mounts() -> dict[str, Path]:
    """Mount points: "cgroup2" for the v2 tree, and each v1 controller's name for its hierarchy."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        if parts[2] == "cgroup2":
            found.setdefault("cgroup2", Path(parts[1]))
        elif parts[2] == "cgroup":
            for option in parts[3].split(","):
                if option in ("memory", "cpu"):
                    found.setdefault(option, Path(parts[1]))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup per controller ("" for the v2 tree), from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        if controllers == "":
            paths[""] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def _enable_controllers(base: Path, group: Path) -> None:
    """Hands memory and cpu down to `group` (cgroup v2). A non-root group that holds processes cannot enable
    controllers for its children ("no internal processes"): the server then moves itself into a leaf of its
    own group first (under systemd this needs Delegate=yes), and back if that does not help."""
    try:
        (base / "cgroup.subtree_control").write_text("+memory +cpu")
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        leaf = group / "server"
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
        try:
            (base / "cgroup.subtree_control").write_text("+memory +cpu")
        except OSError:
            (base / "cgroup.procs").write_text(str(os.getpid()))
            leaf.rmdir()
            raise
    (group / "cgroup.subtree_control").write_text("+memory +cpu")


def _join(mount: Path, path: str) -> Path:
    return mount / path.lstrip("/")


def _remove_stale(base: Path) -> None:
    """Groups of servers that are gone: whatever still runs in them (a kernel, or what it started, that
    survived its server) is killed, then the groups are removed."""
    for group in base.glob("assistd-*"):
        pid = group.name.split("-")[1]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        for child in [*group.glob("k-*"), group / "server"]:
            leftover = KernelCgroup(dirs=[child], procs=[child / "cgroup.procs"])
            leftover.kill_all()
            leftover.remove()
        with contextlib.suppress(OSError):
            group.rmdir()
