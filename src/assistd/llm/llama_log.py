"""llama.cpp's output through Python logging, without touching the process's stdout/stderr.

llama-cpp-python with `verbose=False` points file descriptors 1 and 2 at /dev/null while a model loads,
which silences every other thread of the process (access logs of other requests vanished). So models load
with `verbose=True`, and:
- llama.cpp's own log (its C log callback) goes to the logger "assistd.llama": warnings and errors at their
  level (loading the default model logs none), everything else at DEBUG, so a normal log stays quiet;
- what llama-cpp-python prints to `sys.stderr`/`sys.stdout` from the loading thread (model metadata, the chat
  template) goes to the same logger at DEBUG, while every other thread's writes pass through unchanged."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

log = logging.getLogger("assistd.llama")

# enum ggml_log_level in ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the last one)
GGML_LOG_LEVEL_WARN = 3
GGML_LOG_LEVEL_ERROR = 4
GGML_LOG_LEVEL_CONT = 5
LEVELS = {GGML_LOG_LEVEL_WARN: logging.WARNING, GGML_LOG_LEVEL_ERROR: logging.ERROR}  # the rest: DEBUG


class LlamaLogRouter:
    """The body of llama.cpp's log callback: text arrives in pieces (CONT continues the previous message);
    each complete line becomes one record."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        self._level = logging.DEBUG
        self._partial = ""

    def __call__(self, level: int, text: bytes | None, _user_data: Any = None) -> None:
        with contextlib.suppress(Exception):  # an exception must never cross into C
            self._receive(level, (text or b"").decode("utf-8", errors="replace"))

    def _receive(self, level: int, text: str) -> None:
        with self._lock:
            if level != GGML_LOG_LEVEL_CONT:
                self._emit(self._partial)
                self._partial = ""
                self._level = LEVELS.get(level, logging.DEBUG)
            if not self._logger.isEnabledFor(self._level):
                return
            *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                self._emit(line)

    def _emit(self, line: str) -> None:
        if line.strip():
            self._logger.log(self._level, "%s", line.rstrip())


@functools.cache
def _c_callback() -> Any:
    """The C function pointer, created once and kept for the life of the process (llama.cpp may call it
    from any thread at any time)."""
    import llama_cpp

    return llama_cpp.llama_log_callback(LlamaLogRouter(log))


def route_llama_log() -> None:
    """Sends llama.cpp's log (llama and ggml) to the logger "assistd.llama" instead of stderr."""
    import llama_cpp

    llama_cpp.llama_log_set(_c_callback(), ctypes.c_void_p(0))


class _ThreadDivertedStream:
    """Stands in for sys.stderr/sys.stdout: writes from one thread go to a logger, all others to the
    original stream."""

    def __init__(self, original: TextIO, thread_id: int, logger: logging.Logger) -> None:
        self.original = original
        self._thread_id = thread_id
        self._router = LlamaLogRouter(logger)

    def write(self, s: str) -> int:
        if threading.get_ident() != self._thread_id:
            return self.original.write(s)
        self._router(GGML_LOG_LEVEL_CONT, s.encode("utf-8"))
        return len(s)

    def flush(self) -> None:
        if threading.get_ident() == self._thread_id:
            self._router(0, b"")  # the pending partial line, if any
        else:
            self.original.flush()

    def fileno(self) -> int:
        return self.original.fileno()

    def isatty(self) -> bool:
        return self.original.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


_DIVERT_LOCK = threading.Lock()


@contextlib.contextmanager
def diverted_output() -> Iterator[None]:
    """While it is open, this thread's writes to sys.stderr and sys.stdout go to "assistd.llama" at DEBUG;
    no file descriptor changes, and other threads' output is untouched."""
    with _DIVERT_LOCK:
        me = threading.get_ident()
        err = _ThreadDivertedStream(sys.stderr, me, log)
        out = _ThreadDivertedStream(sys.stdout, me, log)
        sys.stderr, sys.stdout = err, out  # type: ignore[assignment]
        try:
            yield
        finally:
            err.flush()
            out.flush()
            if sys.stderr is err:
                sys.stderr = err.original
            if sys.stdout is out:
                sys.stdout = out.original
