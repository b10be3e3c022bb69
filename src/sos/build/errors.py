"""Errors of ``sos build``, part of the one SOS error family (``sos.errors``)::

    SOSError
    └── BuildError                 a build could not produce an artifact
        ├── ProjectError           the project itself is wrong: no entry point, no version,
        │                          a missing or stale lock (--frozen), an unknown type...
        ├── ToolchainMissingError  a tool the build needs (go, node, npm, javac, mvn) is absent
        └── BuildFailedError       the ecosystem's tool ran and failed (see the build log)

Each message says what is wrong, where (the file and field), and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sos.errors import SOSError

__all__ = ["BuildError", "BuildFailedError", "ProjectError", "ToolchainMissingError"]


class BuildError(SOSError):
    status_code = 422
    type_name = "build_error"


class ProjectError(BuildError):
    """Something to fix in the project before it can be built."""

    type_name = "project_error"

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        where = ""
        if file is not None:
            where = str(file) + (f" [{field}]" if field else "") + ": "
        super().__init__(where + message, details=details)
        self.file = str(file) if file is not None else None
        self.field = field
        if self.file:
            self.details.setdefault("file", self.file)
        if field:
            self.details.setdefault("field", field)


class ToolchainMissingError(BuildError):
    """The build needs a program that is not installed."""

    type_name = "toolchain_missing"

    def __init__(self, tool: str, purpose: str, install: str) -> None:
        super().__init__(
            f"{purpose} needs `{tool}`, which is not on PATH: install it ({install}) and "
            "build again",
            details={"tool": tool, "install": install},
        )
        self.tool = tool


class BuildFailedError(BuildError):
    """A build tool ran and failed; the message carries the end of its output."""

    type_name = "build_failed"

    def __init__(self, message: str, *, log: Path | None = None, output: str = "") -> None:
        text = message
        if output.strip():
            tail = "\n".join(output.strip().splitlines()[-25:])
            text += "\n--- last lines of output ---\n" + tail
        if log is not None:
            text += f"\n(full build log: {log})"
        super().__init__(text, details={"log": str(log)} if log else None)
        self.log = log
        self.output = output
