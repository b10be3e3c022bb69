"""The program a remote build runs in its builder (a sandbox on the server, or a Job on
the runtime image): ``python -I -m sos.build._remote_worker REQUEST.json``.

It runs ``sos.build.build`` on the unpacked source with the builder's interpreter and
prints what happens as JSON lines on stdout, one event each, which the server turns into
the build's steps and log:

- ``{"event": "plan", "steps": [...]}``, ``{"event": "begin", "step": ...}``,
  ``{"event": "end", "step": ..., "detail": ...}``, ``{"event": "output", "line": ...}``;
- last, ``{"event": "result", "result": {...}}`` (``BuildResult.to_json()``, the build
  log's text and ``lock``: the lock file the build installed from, see ``lock_report``;
  ``warnings`` name files relative to the project) or ``{"event": "error", "message": ...,
  "type": ...}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from sos.build.api import BuildResult

__all__ = ["MAX_LOCK_BYTES", "EventProgress", "lock_report", "main"]

#: the largest lock file a remote build brings back to the laptop (bytes)
MAX_LOCK_BYTES = 8 * 1024 * 1024


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


def _digest(path: Path) -> str | None:
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def lock_report(
    root: Path, uploaded: dict[str, str | None], result: BuildResult
) -> dict[str, Any] | None:
    """The lock file the build installed from (the artifact's ``extra.lock``), as the
    server records it (``sos.models.BuildLock``) with its ``text`` (left out above
    ``MAX_LOCK_BYTES`` or when it is not UTF-8); ``uploaded``: the digests of the lock
    files in the source before the build. None without a lock."""
    record = result.metadata.extra.get("lock")
    name = record.get("file") if isinstance(record, dict) else None
    if not isinstance(name, str) or name not in uploaded:
        return None
    data = (root / name).read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    report: dict[str, Any] = {
        "file": name,
        "sha256": digest,
        "size": len(data),
        "written": digest != uploaded[name],
        "uploaded": uploaded[name],
    }
    if len(data) <= MAX_LOCK_BYTES:
        with contextlib.suppress(UnicodeDecodeError):
            report["text"] = data.decode("utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    request = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    events = sys.stdout
    progress = EventProgress(events)
    from sos.build.api import build
    from sos.build.registry import lock_file_names
    from sos.errors import SOSError

    root = Path(request["source"]).resolve()
    uploaded = {name: _digest(root / name) for name in lock_file_names()}
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
    data["lock"] = lock_report(root, uploaded, result)
    data["warnings"] = [w.replace(f"{root}{os.sep}", "") for w in result.warnings]
    progress._emit(event="result", result=data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
