"""Where a remote build runs: the seam between the server's build queue and a builder.

The server (``sos.server.builds``) owns the queue, the records, the log and the artifact
store; a ``BuildRunner`` only runs one build's driver (``sos.build._remote_worker``) on the
source the server received and hands back what it printed. Two runners ship:

- ``sos.server.build_sandbox.BuilderEnvironment``: a clean virtualenv of the local
  runtime's Python, sandboxed by bubblewrap (servers on the local runtime);
- ``sos.runtime.knative.builds.KnativeBuildRunner``: a Kubernetes Job on the curated
  runtime image (servers on Knative).

A backend names its runner with ``Backend.build_runner``; None means the local one.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sos.models import Build

__all__ = [
    "MAX_LINE",
    "PASSED_EXACT",
    "PASSED_ON",
    "BuildRun",
    "BuildRunner",
    "LineReader",
    "StopSignal",
    "passed_on",
]

#: the longest line of a builder's output the server keeps (bytes): the rest of a longer
#: one is dropped, so that output without newlines cannot fill the server's memory (the
#: driver's result, with the build tools' log in it, is one line)
MAX_LINE = 64 << 20

#: the environment variables a build takes from the server's (pip's index and proxies)
PASSED_ON = (
    "PIP_",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
PASSED_EXACT = frozenset({"SSL_CERT_FILE", "SOURCE_DATE_EPOCH", "SOS_NCC_VERSION"})


def passed_on(environ: Mapping[str, str]) -> dict[str, str]:
    """What of the server's environment a build sees (``PASSED_ON``, ``PASSED_EXACT``)."""
    return {k: v for k, v in environ.items() if k.startswith(PASSED_ON) or k in PASSED_EXACT}


class LineReader:
    """A builder's output, bytes in, lines out (without their ``\\n`` or ``\\r\\n``), each
    at most ``most`` bytes (default ``MAX_LINE``): a longer one is cut, and says so."""

    def __init__(self, most: int | None = None) -> None:
        self.most = most or MAX_LINE
        self._parts: list[bytes] = []
        self._size = 0
        self._over = False

    def feed(self, chunk: bytes) -> list[str]:
        """The lines ``chunk`` completes."""
        lines = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._keep(chunk[start:end])
            lines.append(self._take())
            start = end + 1
        self._keep(chunk[start:])
        return lines

    def end(self) -> list[str]:
        """The last line, when the output did not end with a newline."""
        return [self._take()] if self._parts or self._over else []

    def _keep(self, part: bytes) -> None:
        room = self.most - self._size
        if len(part) > room:
            part, self._over = part[: max(room, 0)], True
        if part:
            self._parts.append(part)
            self._size += len(part)

    def _take(self) -> str:
        text = b"".join(self._parts).removesuffix(b"\r").decode("utf-8", errors="replace")
        if self._over:
            text += f" [cut: a line longer than {self.most} bytes]"
        self._parts, self._size, self._over = [], 0, False
        return text


class StopSignal:
    """How the server stops a running build (cancel, timeout, shutdown): the runner says
    how to stop it with ``on_stop``; ``stop`` records the first reason and calls it."""

    def __init__(self) -> None:
        self.reason: tuple[str, str] | None = None  # (state, reason)
        self._hook: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def on_stop(self, hook: Callable[[], None]) -> bool:
        """Call ``hook`` to stop the build; False (and not kept) when it was stopped
        already, so the runner must not start."""
        with self._lock:
            if self.reason is not None:
                return False
            self._hook = hook
            return True

    def stop(self, state: str, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = (state, reason)
            hook = self._hook
        if hook is not None:
            hook()


@dataclass
class BuildRun:
    """One build as its runner sees it."""

    build: Build
    #: the build's directory on the server: ``source.tar.gz`` (the upload) is there; the
    #: runner leaves the artifact in ``out`` (``out_dir``)
    dir: Path
    #: the driver's request without the paths (type, frozen, created_by): the runner adds
    #: ``source``, ``out`` and ``python`` as its builder sees them
    request: dict[str, Any]
    #: the server's environment (pip's index and proxies are passed on)
    environ: dict[str, str]
    #: a secret for this build only, for a builder that calls the server back (fetch the
    #: source, upload the artifact): valid while the build runs
    key: str
    #: the most the source may unpack to (bytes)
    max_unpacked: int
    stop: StopSignal = field(default_factory=StopSignal)

    @property
    def out_dir(self) -> Path:
        return self.dir / "work" / "out"


class BuildRunner(abc.ABC):
    """Runs one build's driver somewhere (see the module docstring)."""

    #: recorded as ``Build.builder`` and in the artifact's provenance: bubblewrap,
    #: process, knative-job
    isolation: str = ""

    @abc.abstractmethod
    def ensure(self) -> None:
        """Make what every build needs (once; again when SOS changed). May be slow."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for the build log: where and on what it runs."""

    @abc.abstractmethod
    def identity(self) -> tuple[str, ...] | None:
        """What makes two builds of the same source by this runner the same (its toolkit,
        interpreter, isolation); None: never reuse an earlier build."""

    @abc.abstractmethod
    def interpreter(self) -> str:
        """The Python a Python artifact is built for, for its provenance: ``python 3.11.7``."""

    def problem(self, type: str | None) -> str | None:
        """Why this runner cannot build a project of ``type`` (python, node...; None: not
        said) now: asked before an upload is accepted."""
        return None

    def toolkit_archive(self) -> Path | None:
        """SOS's build code as a ``.tar.gz``, for a builder that downloads it; None: this
        runner's builders have it already."""
        return None

    @abc.abstractmethod
    def run(self, run: BuildRun, output: Callable[[str], None]) -> int | None:
        """Run the driver: each line it prints goes to ``output`` as it comes; the artifact
        is left in ``run.out_dir``. The driver's exit code (None: it never ran). Raises
        ``sos.errors.SOSError`` with a reason for a failure before or around the driver.
        Returns soon after ``run.stop.stop(...)``."""
