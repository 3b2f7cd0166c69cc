"""The text extraction process: `python -m assistd.tools.file_search.extract_child LIMITS MEMORY SECONDS`.

Started and fed by `ProcessExtractor` (extract_process.py). It imports the parsers, caps its own address
space (RLIMIT_AS), says it is ready, then answers requests one at a time until its stdin closes:

    request:  one JSON line {"filename": str, "size": int}, then `size` raw bytes
    reply:    one JSON line {"segments": [[text, page], ...]}
              or {"error": {"code": str, "message": str}}     (the file cannot be indexed)
              or {"failure": str}                              (a fault of ours)
              with "exiting": true when the process ends after this reply (a MemoryError or a failure)

`serve` is the request loop, shared with other capped children (assistd.images.child).

Replies are JSON, never pickle: the parent does not trust what a process that parsed hostile input says.
An orphan does not linger: idle, it ends when its stdin closes; busy, SIGALRM ends it shortly after the
parent's own time limit. Anything a parser prints goes to stderr, never into the reply channel.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import sys
import traceback
from collections.abc import Callable
from typing import IO, Any

from assistd.tools.file_search.errors import IngestError
from assistd.tools.file_search.extract import extract
from assistd.tools.file_search.limits import ExtractLimits, size

ALARM_GRACE_SECONDS = 30  # the parent kills us at its time limit; the alarm is for when it is gone


def main(argv: list[str]) -> int:
    limits = ExtractLimits(**json.loads(argv[1]))
    memory, seconds = int(argv[2]), float(argv[3])
    return serve(
        lambda header, data: _handle(header["filename"], data, limits, memory), memory, seconds, _preload
    )


Handler = Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bool]]


def serve(handle: Handler, memory: int, seconds: float, preload: Callable[[], None]) -> int:
    """The request loop of a capped child (this one's, and others' such as assistd.images.child): `preload`
    runs before the memory cap; `handle(header, data)` gives the reply and whether the process must end."""
    replies = os.fdopen(os.dup(1), "wb")  # the reply channel; fd 1 itself now points at stderr
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which closes us
    logging.basicConfig(level=logging.ERROR, format="assistd extract: %(name)s: %(message)s")
    preload()
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    _send(replies, {"ready": True})
    requests = sys.stdin.buffer
    while True:
        line = requests.readline()
        if not line:
            return 0
        header = json.loads(line)
        data = requests.read(header["size"])
        if len(data) != header["size"]:
            return 0
        signal.alarm(int(seconds) + ALARM_GRACE_SECONDS)
        reply, exiting = handle(header, data)
        signal.alarm(0)
        del data
        _send(replies, {**reply, "exiting": exiting})
        if exiting:
            return 3


def _handle(filename: str, data: bytes, limits: ExtractLimits, memory: int) -> tuple[dict[str, Any], bool]:
    try:
        segments = extract(filename, data, limits)
        return {"segments": [[s.text, s.page] for s in segments]}, False
    except IngestError as exc:
        return {"error": {"code": exc.code, "message": exc.message}}, False
    except MemoryError:
        message = (
            f"'{filename}' needs more than {size(memory)} of memory to read (limit, --extract-memory-mb). "
            "It may be a decompression bomb; if it is genuine, split it into smaller files."
        )
        return {"error": {"code": "invalid_file", "message": message}}, True
    except Exception as exc:
        traceback.print_exc()
        return {"failure": f"{type(exc).__name__}: {str(exc)[:300]}"}, True


def _send(channel: IO[bytes], reply: dict[str, Any]) -> None:
    channel.write(json.dumps(reply).encode() + b"\n")
    channel.flush()


def _preload() -> None:
    """The parsers are imported once, before the memory cap, so that every request finds them loaded."""
    import bs4  # noqa: F401
    import docx  # noqa: F401
    import pptx  # noqa: F401
    import pypdf  # noqa: F401


if __name__ == "__main__":
    sys.exit(main(sys.argv))
