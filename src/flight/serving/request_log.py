"""Sampled request logs for replay: ``flight serve --request-log FILE`` (off by default).

Each sampled pipeline run becomes one JSON line: when, the pipeline and the version of its
config serving then, the context it ran with, the item ids it returned, and its latency::

    {"at": "2026-12-04T01:40:00.123Z", "pipeline": "recommend_v1", "version": "3f2a9c1b0d4e",
     "context": {"user_id": 1}, "items": [589, 150, 318], "latency_ms": 2.1, "run_id": "..."}

``flight replay FILE --against CONFIG...`` reruns the logged contexts and compares.
Context keys that look like secrets (``token``, ``secret``, ``password``, ``auth``,
``key``, ``cookie``) are never written; the file stops growing at ``max_bytes`` (a warning
says so once).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flight.hooks import Hooks, RunInfo
from flight.result import Result, jsonable

__all__ = ["RequestLog"]

logger = logging.getLogger("flight.serving")

SECRET_KEY = re.compile(r"token|secret|passw|auth|key|cookie|credential", re.IGNORECASE)


class RequestLog(Hooks):
    """A hook writing a sample of pipeline runs to a JSON-lines file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        rate: float = 1.0,
        *,
        version_of: Callable[[str], str | None] = lambda name: None,
        max_bytes: int = 100 * 2**20,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"the request log's sample rate must be in (0, 1], got {rate}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rate = rate
        self.version_of = version_of
        self.max_bytes = max_bytes
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._full = False

    def pipeline_end(self, run: RunInfo, result: Result) -> None:
        if self._full or self._rng.random() >= self.rate:
            return
        items: Any = result.items.get(run.item_type, [])
        record = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "pipeline": run.pipeline,
            "version": self.version_of(run.pipeline),
            "context": {k: v for k, v in run.context.items() if not SECRET_KEY.search(k)},
            "items": jsonable(items),
            "reason": result.reason,
            "latency_ms": round(result.elapsed_ms, 3),
            "run_id": run.run_id,
        }
        line = json.dumps(record, default=_plain) + "\n"
        with self._lock:
            try:
                size = self.path.stat().st_size if self.path.exists() else 0
                if size + len(line) > self.max_bytes:
                    self._full = True
                    logger.warning(
                        "request log %s reached %d bytes: no more requests are logged",
                        self.path,
                        self.max_bytes,
                    )
                    return
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(line)
            except OSError as exc:
                self._full = True
                logger.warning("cannot write the request log %s: %s", self.path, exc)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
