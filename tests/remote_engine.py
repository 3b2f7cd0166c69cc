"""Test support for the remote engine path: `assistd engine` (llama.cpp's server engine alone) as a separate
process on a free port, and an `assistd serve` whose models file names it by `url`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support import MODELS_DIR, ServerProcess, free_port, stop_process, wait_healthy

MODEL_FILE = MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"


class EngineProcess:
    """`assistd engine MODEL --port P --parallel N` with its own log; `kill()` ends it like a crash,
    `start()` brings it back on the same port."""

    def __init__(
        self,
        log_dir: Path,
        parallel: int = 4,
        n_ctx: int = 2048,
        port: int | None = None,
        model: Path = MODEL_FILE,
        mmproj: Path | None = None,
    ) -> None:
        self.model = model
        self.mmproj = mmproj  # a vision model's projector (`assistd engine --mmproj`)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.parallel = parallel
        self.n_ctx = n_ctx
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"engine-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self, timeout: float = 120) -> None:
        cmd = [
            sys.executable,
            "-m",
            "assistd",
            "engine",
            str(self.model),
            *(["--mmproj", str(self.mmproj)] if self.mmproj else []),
            "--port",
            str(self.port),
            "--parallel",
            str(self.parallel),
            "--n-ctx",
            str(self.n_ctx),
            "--kv-cache-bytes",
            str(256 * 1024 * 1024),
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        env.pop("ASSISTD_ENGINE_KEY", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_healthy(self.proc, self.url, self.log, "engine", timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def slots(self) -> list[dict[str, Any]]:
        """The engine's own view of its slots (GET /slots)."""
        return httpx.get(f"{self.url}/slots", timeout=10).json()

    def busy(self) -> int:
        return sum(1 for slot in self.slots() if slot.get("is_processing"))

    def kill(self) -> None:
        """SIGKILL: the engine dies mid-reply, as on a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        stop_process(self.proc)


def models_file(path: Path, name: str, url: str, model_path: Path | None = MODEL_FILE, **extra: Any) -> Path:
    """A models file with one entry served by the engine at `url` (with or without a GGUF `path`)."""
    lines = ["[[models]]", f'name = "{name}"', f'url = "{url}"']
    if model_path is not None:
        lines.append(f'path = "{model_path}"')
    for key, value in extra.items():
        # A JSON string is a TOML basic string (escapes and all): multi-line templates survive.
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value).lower()
        lines.append(f"{key} = {shown}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def remote_server(data_dir: Path, models: Path, env: dict[str, str] | None = None) -> ServerProcess:
    """`assistd serve` reading its models from `models` (ASSISTD_MODELS_FILE)."""
    return ServerProcess(data_dir, env={"ASSISTD_MODELS_FILE": str(models), **(env or {})})
