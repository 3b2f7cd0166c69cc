"""`assistd serve --processes N`: one box served by N assistd processes, the single-box form of the cluster.

One Python process relays about as many tokens per second as its GIL allows (README, "Relay cost"); a GPU
generates more. With N > 1 this process becomes a supervisor of the cluster's parts on one machine:

- each model the embedded engine would generate (a GGUF `path`, engine llama.cpp, no `url`) gets one
  `assistd engine` process, shared by every assistd process (its slots are the model's slots); the models
  file the children read names it by `url` (the GGUF path still gives tokenizer and template);
- the embedded Chroma directory is served by one `chroma run` (embedded Chroma is one process's), unless
  `--chroma-url` names a server;
- uvicorn's process manager starts N `--role all` processes on the one listening socket (the kernel spreads
  connections), each with `--events database` (a stream follows a run that another process executes) and a
  share of the slots (`--worker-runs`, unless given); a process that dies is started again.

Every part stops with the supervisor (Ctrl-C, SIGTERM), and with its death (PR_SET_PDEATHSIG), the N
processes too."""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from assistd.config import ModelEntry, Settings

log = logging.getLogger("assistd.processes")

# Run before a part's command (a fork of a threaded process must not run Python, so no preexec_fn): asks for
# SIGTERM at the supervisor's death, makes sure it is still there, then becomes the command (the request
# survives exec).
DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; ctypes.CDLL('libc.so.6').prctl(1, signal.SIGTERM, 0, 0, 0); "
    "os.getppid() == int(sys.argv[1]) or sys.exit('the supervisor is gone'); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)
CHILD_SETTINGS = "_ASSISTD_CHILD_SETTINGS"  # the children's Settings, as JSON (not an ASSISTD_* setting)
SUPERVISOR = "_ASSISTD_SUPERVISOR"  # the supervisor's pid, for its children
START_SECONDS = 300.0  # a model's engine loads its weights before it answers
ENGINE_URL = re.compile(r" at (http://\S+)")


class StartFailed(RuntimeError):
    """A part of the box did not start; the message says which and why."""


def serve_many(settings: Settings) -> int:
    """Starts the engines and Chroma, then N assistd processes on the port; returns when stopped."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    parts: list[Part] = []
    try:
        child = _child_settings(settings, parts)
    except StartFailed as exc:
        _stop_all(parts)
        print(f"assistd: {exc}", file=sys.stderr)
        return 2
    os.environ[CHILD_SETTINGS] = child.model_dump_json()
    os.environ[SUPERVISOR] = str(os.getpid())
    print(
        f"assistd: {settings.processes} processes on http://{settings.host}:{settings.port}/v1 "
        f"(events through the database; engines: {', '.join(p.name for p in parts) or 'none of ours'})",
        flush=True,
    )
    config = uvicorn.Config(
        "assistd.processes:child_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.processes,
        log_level=settings.log_level,
    )
    sock: socket.socket | None = None
    try:
        sock = config.bind_socket()  # a port taken: uvicorn says so and exits (STARTUP_FAILURE)
        manager = Multiprocess(config, sockets=[sock])
        manager.run()  # until a signal, or a process that failed before serving
    finally:
        if sock is not None:
            sock.close()
        _stop_all(parts)
    failed = [p.pid for p in manager.processes if p.exitcode == STARTUP_FAILURE]
    if failed:  # uvicorn's manager stops the others and returns as after a signal: not a success
        print(f"assistd: process {failed[0]} failed to start (its error is above); stopped", file=sys.stderr)
        return 1
    return 0


def child_app() -> Any:
    """The app of one of the N processes (uvicorn's factory, in a fresh interpreter)."""
    from uvicorn.config import STARTUP_FAILURE

    from assistd.app import create_app

    die_with_parent()  # uvicorn's process manager: its processes end with it
    if os.getppid() != int(os.environ.pop(SUPERVISOR)):  # it died before we asked
        sys.exit("assistd: the supervisor is gone")
    # read, then out of the environment: the processes this one starts need none of it (API keys)
    settings = Settings(**json.loads(os.environ.pop(CHILD_SETTINGS)))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s [{os.getpid()}] %(name)s: %(message)s",
    )
    try:
        return create_app(settings)
    except Exception:  # uvicorn's manager would start it again and again: a start failure stops the box
        logging.getLogger("assistd").exception("this process could not start")
        sys.exit(STARTUP_FAILURE)


def _child_settings(settings: Settings, parts: list[Part]) -> Settings:
    """What each of the N processes runs with; starts the shared parts it needs (appended to `parts`)."""
    if settings.role != "all":
        raise StartFailed("--processes starts processes of --role all; run other roles one process each")
    entries, ours, models_file = [], set(), settings.data_dir / "processes" / "models.toml"
    for entry in settings.model_entries():
        if entry.url is None and entry.engine == "llama.cpp" and entry.path is not None:
            if not entry.path.is_file():  # as with one process: a run on it fails, naming the file
                print(f"assistd: model '{entry.name}': {entry.path} is not a file; no engine started for it")
                entries.append(entry)
                continue
            engine = start_engine(settings, entry)
            parts.append(engine)
            ours.add(entry.name)
            entry = entry.model_copy(update={"url": engine.url, "api_key": engine.key})
        entries.append(entry)
    models_file.parent.mkdir(parents=True, exist_ok=True)
    # it holds the engines' keys: readable by this uid only
    with os.fdopen(os.open(models_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write(models_toml(entries))
    models_file.chmod(0o600)
    update: dict[str, Any] = {
        "processes": 1,
        "events": "database",
        "models_file": models_file.resolve(),
        "migrate": False,  # done once, by this process (cli.serve)
    }
    if settings.chroma_url is None:
        chroma = start_chroma(settings.data_dir / "chroma")
        parts.append(chroma)
        update["chroma_url"] = chroma.url
    if settings.worker_runs is None and (slots := _known_slots(settings, entries, ours)) is not None:
        update["worker_runs"] = max(1, math.ceil(slots / settings.processes))
    return settings.model_copy(update=update)


def _known_slots(settings: Settings, entries: list[ModelEntry], ours: set[str]) -> int | None:
    """All models' slots, where each is known before any engine is asked (None: an engine at an operator's
    `url` tells its own, and each process then uses all of them). `ours`: the models whose engine this
    supervisor started (with their slots)."""
    from assistd.container import slots_of

    total = 0
    for entry in entries:
        if entry.url is not None and entry.parallel is None and entry.name not in ours:
            return None
        total += slots_of(settings, entry)
    return total


# ----------------------------------------------------------------------------------------------- parts


class Part:
    """A process this supervisor started: stopped with it (SIGTERM, then SIGKILL after 10 s)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.lines: list[str] = []  # the last lines it printed, for a failure's message
        self._seen = threading.Condition()
        threading.Thread(target=self._relay, name=f"{name}-output", daemon=True).start()

    def _relay(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            sys.stderr.write(f"[{self.name}] {line}\n")
            with self._seen:
                self.lines = [*self.lines[-19:], line]
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_line(self, match: Callable[[str], str | None], timeout: float) -> str:
        """The first printed line `match` accepts (what it returns); StartFailed if the process ends first."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._seen:
            while True:
                for line in self.lines[seen:]:
                    if (found := match(line)) is not None:
                        return found
                seen = len(self.lines)
                if self.proc.poll() is not None:
                    raise StartFailed(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")
                if time.monotonic() > deadline:
                    raise StartFailed(f"{self.name} did not start in {timeout:.0f} s: {self.tail()}")
                self._seen.wait(1.0)
                seen = min(seen, len(self.lines))

    def wait_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartFailed(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise StartFailed(f"{self.name} did not answer {url} in {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        return " | ".join(self.lines[-5:]) or "(nothing printed)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class EnginePart(Part):
    def __init__(self, name: str, cmd: list[str], key: str) -> None:
        super().__init__(name, cmd, env={**os.environ, "ASSISTD_ENGINE_KEY": key})
        self.key = key
        self.url = ""


def start_engine(settings: Settings, entry: ModelEntry) -> EnginePart:
    """`assistd engine` for the model, on a free loopback port with a key of its own, once it answers."""
    from assistd.container import slots_of

    cmd = [
        sys.executable, "-m", "assistd", "engine", str(entry.path), "--port", "0",
        "--parallel", str(slots_of(settings, entry)), "--n-ctx", str(entry.n_ctx),
        "--n-gpu-layers", str(entry.n_gpu_layers), "--kv-cache-bytes", str(settings.kv_cache_bytes),
    ]  # fmt: skip
    if entry.n_threads or settings.n_threads:
        cmd += ["--n-threads", str(entry.n_threads or settings.n_threads)]
    if entry.mmproj is not None:
        cmd += ["--mmproj", str(entry.mmproj)]
    engine = EnginePart(f"engine {entry.name}", cmd, os.urandom(16).hex())
    engine.url = engine.wait_line(_engine_url, START_SECONDS)
    engine.wait_http(f"{engine.url}/health", START_SECONDS)
    return engine


def start_chroma(path: Path) -> Part:
    """`chroma run` on the embedded store's directory (the same files: a box can go from one process to N
    and back), on a free loopback port."""
    chroma = Path(sys.executable).parent / "chroma"
    if not chroma.exists():
        raise StartFailed(f"{chroma} not found (the chromadb package's CLI): --processes needs it")
    path.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    part = Part(
        "chroma", [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    )
    url = f"http://127.0.0.1:{port}"
    part.wait_http(f"{url}/api/v2/heartbeat", 120.0)
    part.url = url  # type: ignore[attr-defined]
    return part


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _engine_url(line: str) -> str | None:
    found = ENGINE_URL.search(line) if line.startswith("assistd engine:") else None
    return found.group(1) if found else None


def _stop_all(parts: list[Part]) -> None:
    for part in reversed(parts):
        part.stop()


def die_with_parent() -> None:
    """From now on this process gets SIGTERM when its parent dies, however it dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


# ------------------------------------------------------------------------------------------ models file


def models_toml(entries: list[ModelEntry]) -> str:
    """The entries as a models file (absolute paths; what is unset is left out)."""
    out = ["# written by `assistd serve --processes`: the models its processes serve\n"]
    for entry in entries:
        out.append("[[models]]")
        for key, value in entry.model_dump(exclude_none=True).items():
            if isinstance(value, Path):
                value = str(value.resolve())
            out.append(f"{key} = {_toml(value)}")
        out.append("")
    return "\n".join(out)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # a TOML basic string: JSON's escapes are TOML's (DEL is TOML's one more control character)
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to a models file")
