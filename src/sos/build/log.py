"""The build log (a text file people read) and the progress seam (what the CLI draws).

Library code reports progress through a :class:`BuildProgress`; the CLI passes one that
draws rich progress bars, tests and scripts pass nothing (``NullProgress``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol, TextIO

__all__ = ["BuildLog", "BuildProgress", "NullProgress", "plain"]

logger = logging.getLogger(__name__)

#: terminal escape sequences (colours, cursor moves) that tools print even when told not to
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def plain(text: str) -> str:
    """``text`` without terminal escape sequences."""
    return _ANSI.sub("", text)


class BuildProgress(Protocol):
    """Told what the build is doing; must not raise."""

    def plan(self, steps: list[str]) -> None:
        """The steps this build will go through, in order."""

    def begin(self, step: str) -> None: ...

    def output(self, line: str) -> None:
        """A line a build tool printed (for a live tail)."""

    def end(self, step: str, detail: str = "") -> None: ...


class NullProgress:
    def plan(self, steps: list[str]) -> None:
        pass

    def begin(self, step: str) -> None:
        pass

    def output(self, line: str) -> None:
        pass

    def end(self, step: str, detail: str = "") -> None:
        pass


class BuildLog:
    """A plain text log of one build: steps, the commands run and everything they printed."""

    def __init__(self, path: Path, clock: Callable[[], datetime]) -> None:
        self.path = path
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = path.open("w", encoding="utf-8")

    def _stamp(self) -> str:
        return self._clock().strftime("%H:%M:%S")

    def write(self, text: str) -> None:
        for line in text.rstrip("\n").splitlines() or [""]:
            self._file.write(f"{self._stamp()}  {line}\n")
        self._file.flush()

    def section(self, title: str) -> None:
        self._file.write(f"\n{self._stamp()}  == {title}\n")
        self._file.flush()
        logger.info("build step: %s", title)

    def raw(self, line: str) -> None:
        """A line of a tool's output, without terminal escapes (Debian's Maven 3.8 prints
        colour resets even in batch mode with style.color=never)."""
        self._file.write(f"{self._stamp()}  | {plain(line).rstrip()}\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
