"""Extraction with capped memory and time: the parsers run in a long-lived child process (extract_child.py).

A hostile upload (a zip bomb that slips past the checks of limits.py, a parser that loops or leaks) can
then cost the child its memory cap (RLIMIT_AS, `--extract-memory-mb`) or its time limit
(`--extract-timeout-seconds`), never the server's memory: the file ends `failed` with `invalid_file` and a
message that says which limit it hit, and the next file gets a fresh child. The child is started on first
use and kept, so a file costs a pipe round trip, not a Python start-up. Plain text formats are only
decoded, in memory proportional to their size, and stay in the calling process.

Blocking: call from a worker thread. One extraction at a time per extractor (a lock); `check` is called
about every second while waiting and may raise (a cancelled file): the child is then killed.

The process machinery is `CappedProcess`, which other readers of hostile input reuse with a child module of
their own that runs `extract_child.serve` (assistd.images: decoding images).
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from assistd.tools.file_search.errors import IngestError
from assistd.tools.file_search.extract import Segment, extract, is_plain_text
from assistd.tools.file_search.limits import ExtractLimits, MiB, size

log = logging.getLogger("assistd.file_search")

START_SECONDS = 120.0  # importing the parsers on a loaded machine


class CappedProcess(abc.ABC):
    """A long-lived child `python -m <module> CONFIG MEMORY SECONDS` (an `extract_child.serve` loop) that
    answers one request at a time under a memory cap and a time limit per request (see `request`)."""

    module = "assistd.tools.file_search.extract_child"
    name = "text extraction process"  # in the log and in errors
    memory_flag = "--extract-memory-mb"

    def __init__(self, memory_bytes: int, timeout_seconds: float, check_seconds: float = 1.0) -> None:
        self.memory_bytes = memory_bytes
        self.timeout_seconds = timeout_seconds
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """The child's first argument (JSON)."""

    def request(self, header: dict[str, Any], data: bytes, check: Callable[[], None] = lambda: None) -> dict:
        """The child's reply to `header` (one JSON line; `size` is added) and `data`. Raises TimeoutError past
        the time limit and ChildDied when the child ended instead of replying; the child is then stopped, as
        on any exception from `check`, and after a reply that says `exiting`. Blocking: call from a thread."""
        with self._lock:
            try:
                proc = self._running(check)
                self._send(proc, {**header, "size": len(data)}, data)
                reply = self._read_reply(proc, self.timeout_seconds, check)
                if reply is None:
                    raise ChildDied(self._stop())
                if reply.get("exiting"):  # after a failure or a MemoryError: the next request starts a child
                    self._stop()
                return reply
            except BaseException:
                self._stop()
                raise

    def close(self) -> None:
        self._stop()

    @property
    def pid(self) -> int | None:
        """The child process, while one runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # ------------------------------------------------------------------------------------------ process
    def _running(self, check: Callable[[], None]) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        command = [
            sys.executable,
            "-m",
            self.module,
            json.dumps(self.config()),
            str(self.memory_bytes),
            str(self.timeout_seconds),
        ]
        env = {**os.environ, "MALLOC_ARENA_MAX": "2"}  # few malloc arenas: address space is capped
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            ready = self._read_reply(self._proc, max(START_SECONDS, self.timeout_seconds), check)
        except TimeoutError:
            ready = None
        if ready is None or not ready.get("ready"):
            code = self._stop()
            raise RuntimeError(
                f"the {self.name} did not start (exit status {code}); see the server log. "
                f"Its memory limit is {size(self.memory_bytes)} ({self.memory_flag})."
            )
        log.info(
            "%s %d started (memory limit %s, time limit %.0f s per request)",
            self.name,
            self._proc.pid,
            size(self.memory_bytes),
            self.timeout_seconds,
        )
        return self._proc

    def _send(self, proc: subprocess.Popen[bytes], header: dict[str, Any], data: bytes) -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(header).encode() + b"\n")
            proc.stdin.write(data)
            proc.stdin.flush()
        except BrokenPipeError:  # it died: the reply is missing
            pass

    def _read_reply(
        self, proc: subprocess.Popen[bytes], timeout: float, check: Callable[[], None]
    ) -> dict | None:
        """The next reply line; None when the child ended. Raises TimeoutError when the time ran out."""
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            readable, _, _ = select.select([proc.stdout], [], [], min(left, self.check_seconds))
            if readable:
                line = proc.stdout.readline()
                return json.loads(line) if line.endswith(b"\n") else None
            check()

    def _stop(self) -> int:
        """Kills the child (if running) and returns its exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        return code


class ChildDied(Exception):
    """The child ended instead of replying (killed at its memory cap, crashed)."""

    def __init__(self, code: int) -> None:
        self.code = code
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        super().__init__(how)
        self.how = how


class ProcessExtractor(CappedProcess):
    def __init__(
        self,
        limits: ExtractLimits | None = None,
        memory_bytes: int = 1024 * MiB,
        timeout_seconds: float = 120.0,
        check_seconds: float = 1.0,
    ) -> None:
        super().__init__(memory_bytes, timeout_seconds, check_seconds)
        self.limits = limits or ExtractLimits()

    def config(self) -> dict[str, Any]:
        return asdict(self.limits)

    @classmethod
    def from_settings(cls, settings: Any) -> ProcessExtractor:
        return cls(
            ExtractLimits.from_settings(settings),
            settings.extract_memory_mb * MiB,
            settings.extract_timeout_seconds,
        )

    def extract(self, filename: str, data: bytes, check: Callable[[], None] = lambda: None) -> list[Segment]:
        """The text of a file (see extract.extract). Raises IngestError for a file that cannot be read or
        hits a limit, RuntimeError when the extraction process itself fails."""
        if not data or is_plain_text(filename):
            return extract(filename, data, self.limits)
        try:
            reply = self.request({"filename": filename}, data, check)
        except TimeoutError:
            raise IngestError(
                "invalid_file",
                f"Reading the text of '{filename}' took longer than {self.timeout_seconds:.0f} s (limit, "
                "--extract-timeout-seconds). It may be a decompression bomb or damaged; if it is genuine, "
                "split it into smaller files.",
            ) from None
        except ChildDied as exc:
            raise IngestError(
                "invalid_file",
                f"The text extractor {exc.how} while reading '{filename}': the file may be damaged, or need "
                f"more than {size(self.memory_bytes)} of memory (limit, --extract-memory-mb).",
            ) from None
        if "segments" in reply:
            return [Segment(text, page) for text, page in reply["segments"]]
        if "error" in reply:
            raise IngestError(reply["error"]["code"], reply["error"]["message"])
        raise RuntimeError(f"the text extraction process failed on '{filename}': {reply.get('failure')}")
