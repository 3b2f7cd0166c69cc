"""Structured logs (`--log-json`): one JSON line per HTTP request (logger `assistd.access`) and one per job
end (`assistd.jobs`), on stderr, for a log shipper. Without the flag nothing is written to them (nothing is
even built) and the other logs are as they were."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

ACCESS_LOG = logging.getLogger("assistd.access")
JOBS_LOG = logging.getLogger("assistd.jobs")


class JsonLines(logging.Formatter):
    """A record as one JSON object: time, level, logger, event (the message), then its `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        return json.dumps(line, separators=(",", ":"), default=str)


def emit(logger: logging.Logger, event: str, **fields: Any) -> None:
    """One line on `logger` (fields that are None are left out)."""
    logger.info(event, extra={"fields": {k: v for k, v in fields.items() if v is not None}})


def enable_json_logs() -> None:
    """Sends the access and job loggers, as JSON lines, to stderr, and only there (once per process)."""
    for logger in (ACCESS_LOG, JOBS_LOG):
        if any(isinstance(h.formatter, JsonLines) for h in logger.handlers):
            continue
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLines())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # not again through the text format of the root logger
