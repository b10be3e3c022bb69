"""JSON-lines logs for served apps: one object per record, with trace and span ids.

::

    {"ts": "2025-01-01T12:00:00.123Z", "level": "INFO", "logger": "flight.engine",
     "message": "PopularMovies(n=300) returned 300 items in 0.4ms", "pipeline": "recommend_v1",
     "run_id": "…", "operator": "PopularMovies", "n_in": 0, "n_out": 300, "elapsed_ms": 0.41,
     "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", …}

The fields of Flight's per-operator records (``record.flight``) become top-level keys.
Library code never calls :func:`configure_json_logging`; servers (``flight serve``, a
``flight.App`` started without logging set up) do. Records are formatted where they are
logged (so the trace ids are those of the code logging) and written by a background thread,
so a slow terminal or pipe never blocks the event loop.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import time
from typing import Any, TextIO

from flight.tracing import current_ids

__all__ = ["JsonLinesFormatter", "configure_json_logging", "stop_json_logging"]

#: record attributes that are not extra fields (uvicorn's color_message repeats the message)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "flight",
    "color_message",
}


class JsonLinesFormatter(logging.Formatter):
    """Formats a record as one JSON object (no newline inside)."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "flight", None)
        if isinstance(fields, dict):
            body.update(fields)
        for key, value in record.__dict__.items():  # extra={...} of other loggers
            if key not in _STANDARD and key not in body:
                body[key] = value
        if "trace_id" not in body:
            ids = current_ids()
            if ids is not None:
                body["trace_id"], body["span_id"] = ids
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str, separators=(",", ":"))


def _timestamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class _FormattingQueueHandler(logging.handlers.QueueHandler):
    """Formats in the logging thread (trace context is there), enqueues the line."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        line = self.format(record)
        return logging.makeLogRecord({"msg": line, "levelno": record.levelno})


_listener: logging.handlers.QueueListener | None = None
_handler: logging.Handler | None = None


def configure_json_logging(
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
    logger: logging.Logger | None = None,
) -> logging.Handler:
    """Send records of ``logger`` (default: the root logger) at ``level`` and above to
    ``stream`` (default: stderr) as JSON lines. Replaces an earlier call's handler."""
    global _listener, _handler
    stop_json_logging()
    target = logger if logger is not None else logging.getLogger()
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = logging.StreamHandler(stream if stream is not None else sys.stderr)
    writer.setFormatter(logging.Formatter("%(message)s"))
    handler = _FormattingQueueHandler(lines)
    handler.setFormatter(JsonLinesFormatter())
    _listener = logging.handlers.QueueListener(lines, writer)
    _listener.start()
    _handler = handler
    target.addHandler(handler)
    target.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def stop_json_logging() -> None:
    """Flush and remove the handler :func:`configure_json_logging` installed."""
    global _listener, _handler
    if _handler is not None:
        for lg in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
            if isinstance(lg, logging.Logger) and _handler in lg.handlers:
                lg.removeHandler(_handler)
        _handler = None
    if _listener is not None:
        _listener.stop()
        _listener = None


atexit.register(stop_json_logging)
