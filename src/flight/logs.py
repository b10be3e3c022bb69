"""JSON-lines logs for served apps: one object per record, with trace and span ids.

::

    {"ts": "2025-01-01T12:00:00.123Z", "level": "INFO", "logger": "flight.engine",
     "message": "PopularMovies(n=300) returned 300 items in 0.4ms", "pipeline": "recommend_v1",
     "run_id": "…", "operator": "PopularMovies", "n_in": 0, "n_out": 300, "elapsed_ms": 0.41,
     "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", …}

The fields of Flight's per-operator records (``record.flight``) become top-level keys.
Library code never calls :func:`configure_json_logging`; servers (``flight serve``, a
``flight.App`` started without logging set up) do. Records are formatted where they are
logged (so the trace ids are those of the code logging) and written by a background thread
in batches (every 50 ms at most), so neither a slow terminal or pipe nor the writing thread's
turn at the GIL holds up the event loop.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
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
        fields = getattr(record, "flight", None)
        return _line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            fields if isinstance(fields, dict) else None,
            # extra={...} of other loggers
            ((k, v) for k, v in record.__dict__.items() if k not in _STANDARD),
            self.formatException(record.exc_info) if record.exc_info else None,
        )


def _line(
    created: float,
    level: str,
    logger: str,
    message: str,
    fields: Mapping[str, Any] | None,
    extra: Iterable[tuple[str, Any]] = (),
    exception: str | None = None,
) -> str:
    """One JSON line: time, level, logger, message, Flight's fields, other extra fields, the
    trace ids of the span running now, the exception."""
    body: dict[str, Any] = {
        "ts": _timestamp(created),
        "level": level,
        "logger": logger,
        "message": message,
    }
    if fields:
        body.update(fields)
    for key, value in extra:
        if key not in body:
            body[key] = value
    if "trace_id" not in body:
        ids = current_ids()
        if ids is not None:
            body["trace_id"], body["span_id"] = ids
    if exception is not None:
        body["exception"] = exception
    return _ENCODE(body)


def direct_writer(
    logger: logging.Logger, level: int
) -> Callable[[str, dict[str, Any]], None] | None:
    """Where Flight's own records of ``logger`` at ``level`` go only to the handler of
    :func:`configure_json_logging` (no other handler, no filter on the way), a writer that
    makes their JSON line at once: ``writer(message, fields)``, the same line a record
    would give, without building the record and passing it down the logger chain (a third
    of what logging costs a request). Else None: log a record as usual."""
    handler = _handler
    if not isinstance(handler, _LinesHandler) or handler.filters or level < handler.level:
        return None
    seen: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        seen += current.handlers
        if not current.propagate:
            break
        current = current.parent
    if seen != [handler]:
        return None
    name, level_name, put = logger.name, logging.getLevelName(level), handler.lines.put

    def write(message: str, fields: dict[str, Any]) -> None:
        put(_line(time.time(), level_name, name, message, fields))

    return write


#: one encoder for every line (``json.dumps`` with options builds one per call)
_ENCODE = json.JSONEncoder(default=str, separators=(",", ":")).encode
_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    global _second
    whole = int(created)
    if _second[0] != whole:  # the date and time are formatted once a second
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int(created % 1 * 1000):03d}Z"


#: how long the writer thread lets lines gather before it writes them: one wake-up and one
#: write per batch, not per line, so the event loop never waits for the GIL behind it
BATCH_SECONDS = 0.05


class _LinesHandler(logging.Handler):
    """Formats a record where it is logged (its trace context is there) and queues the line."""

    def __init__(self, lines: queue.SimpleQueue[str | None]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.put(self.format(record))
        except Exception:
            self.handleError(record)


class _BatchWriter:
    """Writes queued lines to a stream from a thread of its own, in batches."""

    def __init__(self, lines: queue.SimpleQueue[str | None], stream: TextIO) -> None:
        self._lines = lines
        self._stream = stream
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="flight-log-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._lines.get()
            if first is None:
                return
            time.sleep(BATCH_SECONDS)
            batch, stop = [first], False
            with contextlib.suppress(queue.Empty):
                while (line := self._lines.get_nowait()) is not None:
                    batch.append(line)
                stop = True
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[str]) -> None:
        try:
            self._stream.write("\n".join(batch) + "\n")
            self._stream.flush()
        except (OSError, ValueError) as exc:  # a closed or broken stream: say so once
            if not self._failed and sys.__stderr__ is not None:
                sys.__stderr__.write(f"flight: log lines lost, cannot write them: {exc}\n")
            self._failed = True

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        self._lines.put(None)
        self._thread.join(timeout=5)


_writer: _BatchWriter | None = None
_handler: logging.Handler | None = None


def configure_json_logging(
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
    logger: logging.Logger | None = None,
) -> logging.Handler:
    """Send records of ``logger`` (default: the root logger) at ``level`` and above to
    ``stream`` (default: stderr) as JSON lines. Replaces an earlier call's handler."""
    global _writer, _handler
    stop_json_logging()
    target = logger if logger is not None else logging.getLogger()
    lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    handler = _LinesHandler(lines)
    handler.setFormatter(JsonLinesFormatter())
    _writer = _BatchWriter(lines, stream if stream is not None else sys.stderr)
    _handler = handler
    target.addHandler(handler)
    target.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def stop_json_logging() -> None:
    """Flush and remove the handler :func:`configure_json_logging` installed."""
    global _writer, _handler
    if _handler is not None:
        for lg in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
            if isinstance(lg, logging.Logger) and _handler in lg.handlers:
                lg.removeHandler(_handler)
        _handler = None
    if _writer is not None:
        _writer.stop()
        _writer = None


atexit.register(stop_json_logging)
