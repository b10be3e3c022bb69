"""The program a remote build runs in its builder (a sandbox on the server, or a Job on
the runtime image): ``python -I -m sos.build._remote_worker REQUEST.json``.

It runs ``sos.build.build`` on the unpacked source with the builder's interpreter and
prints what happens as JSON lines on stdout, one event each, which the server turns into
the build's steps and log:

- ``{"event": "plan", "steps": [...]}``, ``{"event": "begin", "step": ...}``,
  ``{"event": "end", "step": ..., "detail": ...}``, ``{"event": "output", "line": ...}``;
- last, ``{"event": "result", "result": {...}}`` (``BuildResult.to_json()`` and the
  build log's text) or ``{"event": "error", "message": ..., "type": ...}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

__all__ = ["EventProgress", "main"]


class EventProgress:
    """A ``BuildProgress`` that prints events as JSON lines."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def _emit(self, **event: Any) -> None:
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()

    def plan(self, steps: list[str]) -> None:
        self._emit(event="plan", steps=steps)

    def begin(self, step: str) -> None:
        self._emit(event="begin", step=step)

    def output(self, line: str) -> None:
        self._emit(event="output", line=line)

    def end(self, step: str, detail: str = "") -> None:
        self._emit(event="end", step=step, detail=detail)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    request = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    events = sys.stdout
    progress = EventProgress(events)
    from sos.build.api import build
    from sos.errors import SOSError

    try:
        result = build(
            request["source"],
            type=request.get("type"),
            out=request["out"],
            python=request.get("python") or sys.executable,
            offline=bool(request.get("offline")),
            frozen=bool(request.get("frozen")),
            progress=progress,
            created_by=request.get("created_by"),
        )
    except SOSError as exc:
        progress._emit(event="error", type=type(exc).__name__, message=exc.message)
        return 1
    except Exception as exc:  # a bug in a builder: reported, not a hang
        progress._emit(event="error", type=type(exc).__name__, message=str(exc))
        return 1
    data = result.to_json()
    data["log_text"] = result.log.read_text(encoding="utf-8", errors="replace")
    progress._emit(event="result", result=data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
