"""One log format for every daemon: a JSON object per line on stderr.

The gateway, the signer and the signer's worker processes all write the same shape, so one
reader (a journal, a log shipper, a test) parses them all: ``ts`` (UTC, milliseconds),
``level``, ``logger``, ``msg``, then whatever a component adds to every record (the worker's
index, the gateway's request id) and the ``extra={...}`` fields of the call, and ``exc`` with
the traceback if there is one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TextIO

import orjson

LEVELS = ("debug", "info", "warning", "error")
# attributes every LogRecord has: anything else on a record came from ``extra=``
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

Context = Callable[[], Mapping[str, object]]


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; ``fields`` go on every line of this process and
    ``context`` is asked at each record (for values that change, like a request id)."""

    def __init__(
        self, fields: Mapping[str, object] | None = None, context: Context | None = None
    ) -> None:
        super().__init__()
        self.fields = dict(fields or {})
        self.context = context

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self.fields,
        }
        if self.context is not None:
            out.update(self.context())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(
    level: str = "info",
    *,
    fields: Mapping[str, object] | None = None,
    context: Context | None = None,
    stream: TextIO | None = None,
) -> None:
    """Send every logger of this process to ``stream`` (stderr) as JSON lines at ``level``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(fields, context))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
