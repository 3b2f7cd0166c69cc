"""`chroma run` (the chromadb package's CLI) for tests: a free port and a data dir kept across restarts, so a
test can stop the server and start it again where it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import free_port, stop_process, wait_healthy

CHROMA = Path(sys.executable).parent / "chroma"


class ChromaProcess:
    def __init__(self, path: Path, start: bool = True) -> None:
        self.path, self.port = path, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        path.mkdir(parents=True, exist_ok=True)
        self.log_path = path.parent / f"chroma-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    def start(self, timeout: float = 120) -> None:
        cmd = [str(CHROMA), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_healthy(self.proc, self.url, self.log, "chroma run", timeout, path="/api/v2/heartbeat")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc)
