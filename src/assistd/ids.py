"""Object ids that sort by creation time.

An id is `<prefix><8 chars: milliseconds><4 chars: per-process sequence><10 random chars>`, in base62 with
an alphabet in ASCII order, so comparing two ids of one kind compares their creation times first. This
lets list pagination order by (created_at, id) and derive a cursor's position from the id alone.
"""

from __future__ import annotations

import secrets
import threading
import time

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TIME_WIDTH = 8
_SEQ_WIDTH = 4
_RANDOM_WIDTH = 10

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


def _decode(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 62 + ALPHABET.index(ch)
    return value


def _next_stamp() -> tuple[int, int]:
    global _last_ms, _seq
    with _lock:
        now = int(time.time() * 1000)
        if now <= _last_ms:
            _seq += 1
            now = _last_ms
        else:
            _last_ms, _seq = now, 0
        return now, _seq


def new_id(prefix: str) -> str:
    ms, seq = _next_stamp()
    rand = "".join(secrets.choice(ALPHABET) for _ in range(_RANDOM_WIDTH))
    return f"{prefix}{_encode(ms, _TIME_WIDTH)}{_encode(seq % 62**_SEQ_WIDTH, _SEQ_WIDTH)}{rand}"


def created_at_of(object_id: str, prefix: str) -> int | None:
    """The Unix second an id of ours was made in, or None for an id not of our format."""
    ms = created_ms_of(object_id, prefix)
    return None if ms is None else ms // 1000


def created_ms_of(object_id: str, prefix: str) -> int | None:
    """The Unix millisecond an id of ours was made in, or None for an id not of our format."""
    body = object_id[len(prefix) :] if object_id.startswith(prefix) else ""
    stamp = body[:_TIME_WIDTH]
    if len(body) != _TIME_WIDTH + _SEQ_WIDTH + _RANDOM_WIDTH or any(c not in ALPHABET for c in body):
        return None
    return _decode(stamp)


def now() -> int:
    return int(time.time())
