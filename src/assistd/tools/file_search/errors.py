"""The error of a file that file_search cannot index, with the OpenAI `last_error.code` to report."""

from __future__ import annotations


class IngestError(Exception):
    """`unsupported_file` for a type we do not handle, `invalid_file` for a broken, empty or hostile one;
    the message says what to do about it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
