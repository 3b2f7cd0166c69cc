"""How a kernel process is confined: bubblewrap when present, resource limits and an unprivileged uid.

The server builds one `Sandbox` at start. It probes the machine once (is bwrap there and does it work, are
we root, can an unprivileged uid run the Python installation) and then turns a `KernelPlan` (the kernel's
directories, uid and command) into the argv to spawn. `report()` says, protection by protection, what is on.

"Isolation available" (`isolated`) means: the bwrap binary is found and a probe run of it, with every
namespace and capability setting a kernel gets, starts this Python and imports ipykernel. Without it the
code interpreter refuses to run code unless the operator opted out (code_allow_unsandboxed).

Every kernel is started as ``[bwrap ...] python -c LAUNCHER CONFIG``: the launcher (below, run by the same
Python that runs ipykernel) sets the rlimits, leaves the network (unshare) when bwrap is absent, drops to the
kernel's uid, asks for SIGKILL when its parent dies (PR_SET_PDEATHSIG, after the uid change, which would
clear it), forbids new privileges, then execs ipykernel with a clean environment. Limits are set in the
child itself, never with ``preexec_fn`` (unsafe in a threaded server).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("assistd.code_interpreter")

# Where the session directory appears inside the sandbox: the path the hosted tool used.
MOUNT_DATA = "/mnt/data"
# Kernel uids: code_sandbox_uid_base + 0..999, shared by all servers of a machine; the probe runs as the uid
# just past them, so that it never counts as a kernel's process.
UID_RANGE = 1000

LAUNCHER = r"""
import ctypes, json, os, resource, signal, sys
cfg = json.loads(sys.argv[1])
for name, value in cfg["limits"].items():
    resource.setrlimit(getattr(resource, name), (value, value))
libc = ctypes.CDLL(None, use_errno=True)
if cfg["unshare_net"] and libc.unshare(0x40000000) != 0:
    sys.exit("sandbox: unshare(CLONE_NEWNET) failed: errno %d" % ctypes.get_errno())
if cfg["uid"] is not None:
    os.setgroups([])
    os.setgid(cfg["gid"])
    os.setuid(cfg["uid"])
if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG: the kernel dies with the server
    sys.exit("sandbox: prctl(PR_SET_PDEATHSIG) failed: errno %d" % ctypes.get_errno())
if cfg["parent"] is not None and os.getppid() != cfg["parent"]:
    sys.exit("sandbox: the server died while the kernel started")
libc.prctl(38, 1, 0, 0, 0)
os.umask(0o077)
os.chdir(cfg["cwd"])
os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
"""


@dataclass
class KernelPlan:
    """One kernel's place on the host: run_dir holds the connection file, sockets and home; data_dir is
    the session directory (/mnt/data)."""

    run_dir: Path
    data_dir: Path
    uid: int | None
    connection_file: Path


@dataclass
class Limits:
    memory_mb: int
    cpu_seconds: int
    processes: int
    file_mb: int
    tmp_mb: int
    session_mb: int = 256


class Sandbox:
    def __init__(
        self, limits: Limits, uid_base: int, use_bwrap: bool = True, bwrap_path: str = "bwrap"
    ) -> None:
        self.limits = limits
        self.uid_base = uid_base
        self.python = sys.executable
        self.is_root = os.geteuid() == 0
        self.bwrap = shutil.which(bwrap_path) if use_bwrap else None
        self._bwrap_why = "disabled by settings (code_use_bwrap=false)" if not use_bwrap else ""
        if use_bwrap and self.bwrap is None:
            self._bwrap_why = f"bwrap not found ({bwrap_path}): apt-get install bubblewrap"
        self.setuid = self.is_root
        self._setuid_why = ""
        self.unshare_net = False
        self._probed = False
        self._probe_lock = threading.Lock()

    # ---- probing -------------------------------------------------------------------------------------
    def probe(self) -> None:
        """Checks once which mechanisms work on this machine (a few short subprocesses). Thread-safe: a
        caller never sees a half-probed sandbox."""
        with self._probe_lock:
            if not self._probed:
                self._probe()
                self._probed = True

    @property
    def isolated(self) -> bool:
        """Whether kernels run inside a working bubblewrap (see the module docstring)."""
        self.probe()
        return self.bwrap is not None

    def why_not_isolated(self) -> str:
        self.probe()
        return "" if self.bwrap else self._bwrap_why

    def _probe(self) -> None:
        if self.bwrap:
            ok, why = self._try_bwrap()
            if not ok:
                self._bwrap_why = f"bwrap at {self.bwrap} does not work here: {why}"
                self.bwrap = None
        if not self.is_root:
            self.setuid = False
            self._setuid_why = "server not running as root: the kernel runs as the server's own user"
        elif not self.bwrap and not self._uid_can_run_python():
            self.setuid = False
            self._setuid_why = (
                f"the Python installation ({sys.base_prefix}) is not readable by an unprivileged uid "
                "and bwrap is absent: the kernel runs as root"
            )
        if not self.bwrap and self.is_root:
            self.unshare_net = self._try_unshare_net()

    def _try_bwrap(self) -> tuple[bool, str]:
        """A probe run with the namespaces and capability settings a kernel gets, through the launcher and
        (as root) as an unprivileged uid, as a kernel: it must import ipykernel."""
        uid = self.uid_base + UID_RANGE if self.is_root else None
        cfg = self._launcher_config(uid, Path("/"), [self.python, "-c", "import ipykernel"], {})
        cfg["limits"], cfg["parent"] = {}, None
        argv = [self.bwrap or "bwrap", *self._system_binds(), *self._isolation_args()]
        argv += [self.python, "-c", LAUNCHER, json.dumps(cfg)]
        return _run_ok(argv)

    def _uid_can_run_python(self) -> bool:
        cfg = self._launcher_config(self.uid_base, Path("/"), [self.python, "-c", "import ipykernel"], {})
        cfg["limits"] = {}
        return _run_ok([self.python, "-c", LAUNCHER, json.dumps(cfg)])[0]

    def _try_unshare_net(self) -> bool:
        cfg = self._launcher_config(None, Path("/"), [self.python, "-c", "pass"], {})
        cfg["limits"], cfg["unshare_net"] = {}, True
        return _run_ok([self.python, "-c", LAUNCHER, json.dumps(cfg)])[0]

    # ---- what a kernel gets ----------------------------------------------------------------------------
    @property
    def mounts_data(self) -> bool:
        """True when the session directory really is /mnt/data inside the kernel."""
        return self.bwrap is not None

    def kernel_uid(self, slot: int) -> int | None:
        return self.uid_base + slot if self.setuid else None

    def data_path(self, plan: KernelPlan) -> str:
        """The session directory as the kernel's code sees it."""
        return MOUNT_DATA if self.mounts_data else str(plan.data_dir)

    def command(self, plan: KernelPlan) -> list[str]:
        env = self._kernel_env(plan)
        kernel = [self.python, "-m", "ipykernel_launcher", "-f", str(plan.connection_file)]
        cwd = Path(self.data_path(plan))
        cfg = self._launcher_config(plan.uid, cwd, kernel, env)
        launch = [self.python, "-c", LAUNCHER, json.dumps(cfg)]
        if not self.bwrap:
            return launch
        return [self.bwrap, *self._bwrap_args(plan), *launch]

    def _launcher_config(self, uid: int | None, cwd: Path, argv: list[str], env: dict[str, str]) -> dict:
        lim = self.limits
        limits = {
            "RLIMIT_AS": lim.memory_mb * 1024 * 1024,
            "RLIMIT_CPU": lim.cpu_seconds,
            "RLIMIT_FSIZE": min(lim.file_mb, lim.session_mb) * 1024 * 1024,
            "RLIMIT_CORE": 0,
        }
        if uid is not None:  # RLIMIT_NPROC counts the processes of a uid: only meaningful with our own uid
            limits["RLIMIT_NPROC"] = lim.processes
        return {
            "limits": limits,
            # Without bwrap the launcher's parent is this process; with it, bwrap --die-with-parent answers.
            "parent": None if self.bwrap else os.getpid(),
            "unshare_net": self.unshare_net,
            "uid": uid,
            "gid": uid,
            "cwd": str(cwd),
            "argv": argv,
            "env": env,
        }

    def _kernel_env(self, plan: KernelPlan) -> dict[str, str]:
        home = plan.run_dir / "home"
        bindir = str(Path(self.python).parent)
        return {
            "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": "/tmp" if self.bwrap else str(home),
            "LANG": "C.UTF-8",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "MPLCONFIGDIR": str(home / ".matplotlib"),
            "IPYTHONDIR": str(home / ".ipython"),
            "MALLOC_ARENA_MAX": "2",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }

    def _system_binds(self) -> list[str]:
        args: list[str] = []
        for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            p = Path(top)
            if p.is_symlink():
                args += ["--symlink", os.readlink(p), top]
            elif p.is_dir():
                args += ["--ro-bind", top, top]
        args += _parents("/etc/passwd")
        for etc in (
            "/etc/ld.so.cache",
            "/etc/ld.so.conf",
            "/etc/ld.so.conf.d",
            "/etc/alternatives",
            "/etc/localtime",
            "/etc/fonts",
            "/etc/mime.types",
        ):
            if os.path.exists(etc):
                args += ["--ro-bind", etc, etc]
        for prefix in sorted({sys.base_prefix, sys.prefix, os.path.realpath(sys.base_prefix)}):
            if prefix != "/usr" and not prefix.startswith("/usr/"):
                args += [*_parents(prefix), "--ro-bind", prefix, prefix]
        args += ["--proc", "/proc", "--dev", "/dev"]
        return args

    def _bwrap_args(self, plan: KernelPlan) -> list[str]:
        # The private /tmp comes first, so that a Python installation or venv that lives under the host's
        # /tmp (a CI checkout, say) is bound on top of it rather than hidden by it.
        args = ["--perms", "1777", "--size", str(self.limits.tmp_mb * 1024 * 1024), "--tmpfs", "/tmp"]
        args += self._system_binds()
        passwd, group = self._identity_files(plan)
        args += ["--ro-bind", str(passwd), "/etc/passwd", "--ro-bind", str(group), "/etc/group"]
        below = "/tmp" if plan.run_dir.is_relative_to("/tmp") else "/"
        args += [*_parents(str(plan.run_dir), below), "--bind", str(plan.run_dir), str(plan.run_dir)]
        args += [*_parents(MOUNT_DATA), "--bind", str(plan.data_dir), MOUNT_DATA]
        return args + self._isolation_args()

    def _isolation_args(self) -> list[str]:
        """Namespaces, parent-death and capabilities: the same for every kernel and for the probe."""
        args = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        args += ["--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv"]
        if self.is_root:  # the launcher needs only to change uid; everything else goes with the bounding set
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        return args

    def _identity_files(self, plan: KernelPlan) -> tuple[Path, Path]:
        uid = plan.uid if plan.uid is not None else os.getuid()
        passwd = plan.run_dir.parent / "passwd"
        group = plan.run_dir.parent / "group"
        passwd.write_text(
            f"root:x:0:0::/root:/bin/false\nsandbox:x:{uid}:{uid}::{plan.run_dir}/home:/bin/sh\n"
        )
        group.write_text(f"root:x:0:\nsandbox:x:{uid}:\n")
        return passwd, group

    # ---- the report ----------------------------------------------------------------------------------
    def report(self) -> list[tuple[str, bool, str]]:
        self.probe()
        bw = self.bwrap is not None
        lim = self.limits
        uid_why = (
            f"kernels run as dedicated uids from {self.uid_base} (one per live kernel)"
            if self.setuid
            else self._setuid_why
        )
        if bw:
            net = "bwrap --unshare-net: a network namespace with no interfaces but loopback"
        elif self.unshare_net:
            net = "unshare(CLONE_NEWNET) without bwrap: only a loopback interface"
        else:
            net = "no bwrap and not root: the kernel shares the host network"
        nproc_why = (
            f"RLIMIT_NPROC={lim.processes} for the kernel's uid"
            if self.setuid
            else "RLIMIT_NPROC counts all processes of a uid; the kernel shares the server's uid"
        )
        off_fs = self._bwrap_why or "bwrap absent"
        return [
            ("bubblewrap", bw, f"{self.bwrap}" if bw else off_fs),
            (
                "private filesystem view",
                bw,
                "only /usr, /lib*, the Python installation, a tmpfs /tmp and "
                "the session dir at /mnt/data are visible"
                if bw
                else off_fs + ": the kernel sees the host "
                "filesystem with its uid's permissions; its cwd is the session dir",
            ),
            ("network isolation", bw or self.unshare_net, net),
            (
                "pid namespace",
                bw,
                "bwrap --unshare-pid: the kernel sees and can signal only its own processes"
                if bw
                else off_fs,
            ),
            ("unprivileged user", self.setuid, uid_why),
            ("clean environment", True, "only PATH, HOME, LANG, MPL*/IPYTHONDIR and thread-count variables"),
            ("memory limit", True, f"RLIMIT_AS={lim.memory_mb} MB"),
            (
                "cpu time limit",
                True,
                f"RLIMIT_CPU={lim.cpu_seconds} s per process, plus the per-execution "
                "timeout (interrupt, then restart)",
            ),
            ("process limit", self.setuid, nproc_why),
            ("file size limit", True, f"RLIMIT_FSIZE={min(lim.file_mb, lim.session_mb)} MB"),
            (
                "session disk cap",
                True,
                f"/mnt/data and the kernel's home hold at most {lim.session_mb} MB per session: an "
                "execution that writes past it is stopped and the files it wrote past it are removed",
            ),
            (
                "dies with the server",
                True,
                ("bwrap --die-with-parent" if bw else "PR_SET_PDEATHSIG in the launcher")
                + "; kernels a dead server left behind are killed when a server starts",
            ),
        ]


def _parents(path: str, below: str = "/") -> list[str]:
    """bwrap run as root makes missing parents of a mount point 0700: create them 0755 first (strictly below
    `below`) so the unprivileged kernel can cross them."""
    args: list[str] = []
    for parent in reversed(Path(path).parents):
        if parent != Path(below) and parent.is_relative_to(below):
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _run_ok(argv: list[str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()[-300:]
