"""A throwaway PostgreSQL cluster for tests: Debian's binaries, a temp data dir, a free TCP port on 127.0.0.1.

As root (CI) the binaries run as the `postgres` user through `runuser`; the temp dir comes from
`tempfile.mkdtemp()` (not pytest's tmp_path, which is 0700 under root) and is chowned to that user. The unix
sockets live in the data dir, so nothing touches /var/run/postgresql or a system cluster.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support import free_port

MISSING = "PostgreSQL is not installed: `apt-get install postgresql` (Debian's package: initdb, pg_ctl)"
SUPERUSER = "postgres"


def postgres_bindir() -> Path:
    """Debian's versioned bin dir (the newest under /usr/lib/postgresql), else `pg_config --bindir`."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0))
    for candidate in reversed(found):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        path = Path(out.stdout.strip())
        if (path / "initdb").exists():
            return path
    if shutil.which("initdb"):
        return Path(shutil.which("initdb")).parent  # type: ignore[arg-type]
    raise RuntimeError(MISSING)


class PostgresServer:
    """initdb + pg_ctl in a temp dir. `url` is the `postgres` database; `new_database()` makes more."""

    def __init__(self, port: int | None = None, max_connections: int = 300) -> None:
        self.bindir = postgres_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="assistd-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.max_connections = max_connections
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, SUPERUSER, SUPERUSER)
        self.root.chmod(0o755)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        self.start()

    # -- process control ----------------------------------------------------------------------------------

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / tool), *args]
        return ["runuser", "-u", SUPERUSER, "--", *cmd] if self._as_postgres else cmd

    def _run(self, tool: str, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            output = f"{proc.stdout}\n{proc.stderr}"
            raise RuntimeError(f"{tool} failed ({proc.returncode}):\n{output}\n{self.log()}")
        return proc.stdout

    def start(self, timeout: float = 60) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.data_dir}",
                f"-c listen_addresses={self.host}",
                f"-c max_connections={self.max_connections}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c track_commit_timestamp=on",  # tests order concurrent commits by it
            ]
        )
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout)),
            timeout=timeout + 10,
        )

    def stop(self, mode: str = "fast") -> None:
        if self.pid() is None:
            return
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", timeout=90)

    def restart(self, pause_seconds: float = 3) -> None:
        """Stops (fast: connections are cut), stays down `pause_seconds`, starts again on the same port."""
        self.stop("fast")
        time.sleep(pause_seconds)
        self.start()

    def kill(self) -> None:
        """SIGKILL of the postmaster and its children, as on a crash; `start()` recovers from the WAL."""
        pid = self.pid()
        if pid is None:
            return
        children = _children(pid)
        for victim in [pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_exists(p) for p in [pid, *children]):
            time.sleep(0.05)
        if _exists(pid):  # an unreaped zombie: postgres would take its pid for a live postmaster
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def close(self) -> None:
        """Stops the server and removes its directory."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- databases ----------------------------------------------------------------------------------------

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def dsn_for(self, database: str) -> str:
        """libpq form of `url_for` (for psycopg.connect)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def new_database(self, name: str, icu_locale: str | None = None) -> str:
        """CREATE DATABASE `name` (ICU collation `icu_locale` when given); returns its URL."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if icu_locale is not None:
            query = sql.SQL("{} LOCALE_PROVIDER icu ICU_LOCALE {} TEMPLATE template0").format(
                query, sql.Literal(icu_locale)
            )
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(query)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _alive(pid: int) -> bool:
    if not _exists(pid):
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _exists(pid: int) -> bool:
    """Whether the pid exists at all (a zombie too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children(pid: int) -> list[int]:
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().split(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(Path(stat).parent.name))
    return found
