"""Loading a model never touches the process's stdout/stderr: llama.cpp's log goes through Python logging
("assistd.llama"), and what other threads write while a model loads is never lost."""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

import pytest

from assistd.config import DEFAULT_MODEL_FILE, DEFAULT_MODEL_NAME, ModelEntry
from assistd.llm.llama_log import (
    GGML_LOG_LEVEL_CONT,
    GGML_LOG_LEVEL_ERROR,
    GGML_LOG_LEVEL_WARN,
    LlamaLogRouter,
    diverted_output,
)

MODEL = Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_FILE
GGML_LOG_LEVEL_INFO = 2


def test_pieces_become_one_record_per_line_with_the_level_of_their_message(caplog):
    logger = logging.getLogger("assistd.llama.test")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    router = LlamaLogRouter(logger)
    router(GGML_LOG_LEVEL_INFO, b"loading model ")
    router(GGML_LOG_LEVEL_CONT, b"...")
    router(GGML_LOG_LEVEL_CONT, b" done\nsecond line\n")
    router(GGML_LOG_LEVEL_WARN, b"a warning\n")
    router(GGML_LOG_LEVEL_ERROR, b"failed to load")
    router(GGML_LOG_LEVEL_INFO, b"\n")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "loading model ... done"),
        (logging.DEBUG, "second line"),
        (logging.WARNING, "a warning"),
        (logging.ERROR, "failed to load"),
    ]


def test_diverted_output_takes_only_this_threads_writes(caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="assistd.llama")
    seen_in_other_thread = threading.Event()

    def other() -> None:
        print("from another thread", file=sys.stderr)
        seen_in_other_thread.set()

    with diverted_output():
        print("model metadata: {...}", file=sys.stderr)
        worker = threading.Thread(target=other)
        worker.start()
        worker.join(timeout=60)
    assert seen_in_other_thread.is_set()
    assert "from another thread" in capsys.readouterr().err
    assert [r.getMessage() for r in caplog.records if r.name == "assistd.llama"] == ["model metadata: {...}"]


@pytest.mark.model
def test_loading_a_model_never_redirects_fds_and_loses_no_other_output(monkeypatch, capfd, caplog):
    from assistd.llm.llama_cpp_backend import LlamaCppBackend

    if not MODEL.exists():
        pytest.fail(f"{MODEL} is missing: run `make install`")
    caplog.set_level(logging.DEBUG, logger="assistd.llama")
    redirected: list[int] = []
    real_dup2 = os.dup2

    def dup2(fd: int, fd2: int, inheritable: bool = True) -> int:
        if fd2 in (1, 2):
            redirected.append(fd2)
        return real_dup2(fd, fd2, inheritable)

    monkeypatch.setattr(os, "dup2", dup2)
    loaded = threading.Event()
    written: list[str] = []

    def chatter() -> None:  # another part of the server writing to fds 1 and 2 during the load
        i = 0
        while not loaded.wait(0.002) or i < 20:
            line = f"other-output-{i}"
            os.write(1 + i % 2, f"{line}\n".encode())
            written.append(line)
            i += 1

    thread = threading.Thread(target=chatter)
    thread.start()
    try:
        LlamaCppBackend(ModelEntry(name=DEFAULT_MODEL_NAME, path=MODEL, n_ctx=1024, n_threads=2), 0)
    finally:
        loaded.set()
        thread.join(timeout=60)
    captured = capfd.readouterr()
    assert redirected == []
    lost = set(written) - set((captured.out + captured.err).splitlines())
    assert lost == set()
    llama_lines = [r.getMessage() for r in caplog.records if r.name == "assistd.llama"]
    assert any("llama_model_loader" in line for line in llama_lines)  # llama.cpp's C log
    assert any("Model metadata" in line for line in llama_lines)  # llama-cpp-python's prints
    assert "llama_model_loader" not in captured.err and "Model metadata" not in captured.err
