"""Instance logs: files under the data dir, a bounded in-memory tail, and followers.

An instance writes its stdout and stderr into pipes, never into a file: a small writer
process per stream (``cat``, outside the sandbox, started by the supervisor) copies each
pipe into its file. So an instance cannot rewrite, truncate or seek its own log (what
``sos logs`` shows is what it printed, in order), the file it cannot reach is bounded by the
writer's own ``RLIMIT_FSIZE``, and both keep running while the server restarts (the pipes are
not the server's). The server polls the files (off the event loop), keeps the last lines of
each instance in memory for ``sos logs``, and hands new lines to followers. A file above
``max_bytes`` is rotated copy-then-truncate (one ``.1`` generation kept); the writer's
O_APPEND descriptor goes on writing at the new end. Platform events (started, probe failed,
exited) go to a third file per instance, so they survive a restart too.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sos.runtime.base import LogLine

__all__ = ["LogStore", "error_block"]

STREAMS = ("stdout", "stderr", "platform")
#: finished instances per revision whose last lines stay readable
KEEP_FINISHED = 5
_SUFFIX = {"stdout": ".out.log", "stderr": ".err.log", "platform": ".sos.log"}
#: a line longer than this is cut in memory (the file keeps it whole)
MAX_LINE = 64 * 1024
#: at most this many lines of an instance's last error are quoted in a failed status
ERROR_LINES = 15
_TRACEBACK = "Traceback (most recent call last):"
_ERROR = re.compile(r"[A-Za-z]*(?:Error|Exception)\b|\bFATAL\b")


@dataclass
class _Source:
    service: str
    revision: str
    instance: str
    paths: dict[str, Path]
    offsets: dict[str, int] = field(default_factory=dict)
    partial: dict[str, bytes] = field(default_factory=dict)
    tail: deque[LogLine] = field(default_factory=lambda: deque(maxlen=1000))
    done: bool = False
    final_read: bool = False


class LogStore:
    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int = 10 * 2**20,
        tail_lines: int = 1000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.tail_lines = tail_lines
        self.clock = clock
        self._sources: dict[str, _Source] = {}
        self._followers: set[tuple[str, str | None, asyncio.Queue[LogLine]]] = set()

    def _paths(self, service: str, revision: str, instance: str) -> dict[str, Path]:
        folder = self.root / service / revision
        return {stream: folder / f"{instance}{_SUFFIX[stream]}" for stream in STREAMS}

    def open(self, service: str, revision: str, instance: str) -> tuple[IO[bytes], IO[bytes]]:
        """Files for a new instance's stdout and stderr, for their writers (the caller
        closes them once the writers run)."""
        paths = self._paths(service, revision, instance)
        paths["stdout"].parent.mkdir(parents=True, exist_ok=True)
        self.watch(service, revision, instance, from_start=True)
        return open(paths["stdout"], "ab"), open(paths["stderr"], "ab")

    @staticmethod
    def writer(file: IO[bytes], max_bytes: int) -> tuple[int, subprocess.Popen[bytes]]:
        """A pipe into ``file``: its write end (for an instance's stdout or stderr; the caller
        closes it once the instance has it) and the process copying it into the file, which
        ends when every copy of the write end is closed. It runs in a session of its own, so
        it outlives a server restart with the instance, and no file it writes grows past
        ``max_bytes``."""
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(
                ["prlimit", f"--fsize={max_bytes}", "--", "cat"],
                stdin=read_end,
                stdout=file,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        return write_end, process

    def watch(self, service: str, revision: str, instance: str, *, from_start: bool) -> None:
        """Follow an instance's files (``from_start=False`` for a re-adopted instance:
        only its last 64 KiB are read back into the tail)."""
        if instance in self._sources:
            return
        paths = self._paths(service, revision, instance)
        source = _Source(service, revision, instance, paths)
        for stream, path in paths.items():
            size = path.stat().st_size if path.exists() else 0
            source.offsets[stream] = 0 if from_start else max(0, size - 65536)
        self._sources[instance] = source

    def platform(self, service: str, revision: str, instance: str, text: str) -> None:
        """Record a platform event for an instance (read back like its own output)."""
        path = self._paths(service, revision, instance)["platform"]
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = self.clock().isoformat(timespec="milliseconds")
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {text}\n")

    def forget(self, instance: str) -> None:
        """Stop polling a finished instance's files; its tail stays readable a while."""
        source = self._sources.get(instance)
        if source is None:
            return
        source.done = True
        source.final_read = True
        finished = [
            key
            for key, other in self._sources.items()
            if other.done and other.revision == source.revision and key != instance
        ]
        for key in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._sources[key]

    def stderr_tail(self, service: str, revision: str, instance: str, size: int = 2048) -> str:
        """The end of an instance's stderr file, read now (a small read, on a rare path:
        an instance that exited before it was ready)."""
        path = self._paths(service, revision, instance)["stderr"]
        try:
            with open(path, "rb") as handle:
                handle.seek(max(0, path.stat().st_size - size))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def remove_service(self, service: str) -> None:
        for key in [k for k, s in self._sources.items() if s.service == service]:
            del self._sources[key]
        shutil.rmtree(self.root / service, ignore_errors=True)

    def last_lines(self, revision: str, count: int) -> list[str]:
        lines = sorted(
            (line for s in self._sources.values() if s.revision == revision for line in s.tail),
            key=lambda line: line.at,
        )
        return [f"[{line.stream}] {line.text}" for line in lines[-count:]]

    def last_error(self, revision: str, limit: int = ERROR_LINES) -> list[str]:
        """The lines that explain why ``revision`` failed: the last traceback (or, without
        one, the last lines naming an Error, Exception or FATAL) in its instances' output,
        at most ``limit`` lines; [] when there is none."""
        found: tuple[datetime, list[LogLine]] | None = None
        for source in self._sources.values():
            if source.revision != revision:
                continue
            for stream in ("stderr", "stdout"):
                block = error_block([line for line in source.tail if line.stream == stream])
                if block and (found is None or block[-1].at >= found[0]):
                    found = (block[-1].at, block)
        if found is None:
            return []
        return [f"[{line.stream}] {line.text}" for line in _bounded(found[1], limit)]

    # ---- polling (called periodically; the file work runs in a thread)

    async def poll(self) -> None:
        sources = [s for s in self._sources.values() if not s.done or s.final_read]
        if not sources:
            return
        found = await asyncio.to_thread(self._read_all, sources)
        for source in sources:
            source.final_read = False
        for line in found:
            for service, revision, queue in list(self._followers):
                if service == line.service and revision in (None, line.revision):
                    queue.put_nowait(line)

    def _read_all(self, sources: list[_Source]) -> list[LogLine]:
        found: list[LogLine] = []
        now = self.clock()
        for source in sources:
            for stream, path in source.paths.items():
                found += self._read(source, stream, path, now)
        return found

    def _read(self, source: _Source, stream: str, path: Path, now: datetime) -> list[LogLine]:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return []
        offset = source.offsets.get(stream, 0)
        if size < offset:  # truncated under us
            offset = 0
        data = b""
        if size > offset:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(min(size - offset, 4 * 2**20))
            offset += len(data)
        if stream != "platform" and size > self.max_bytes and offset >= size:
            # everything is read: rotate copy-then-truncate (the instance keeps its O_APPEND
            # descriptor and goes on at the new end; a line written during these two calls
            # can be lost, as with logrotate's copytruncate)
            shutil.copyfile(path, path.with_name(path.name + ".1"))
            os.truncate(path, 0)
            offset = 0
        source.offsets[stream] = offset
        if not data:
            return []
        data = source.partial.pop(stream, b"") + data
        *complete, rest = data.split(b"\n")
        if len(rest) > MAX_LINE:  # no newline for that long: it is a line of its own
            complete.append(rest)
        elif rest:
            source.partial[stream] = rest
        lines = []
        for raw in complete:
            text = raw[:MAX_LINE].decode("utf-8", "replace").rstrip("\r")
            if len(raw) > MAX_LINE:
                text += f" [line cut: {len(raw) - MAX_LINE} more bytes in the file]"
            at = now
            if stream == "platform":
                at, text = _stamped(text, now)
            line = LogLine(at, source.service, source.revision, source.instance, stream, text)
            source.tail.append(line)
            lines.append(line)
        return lines

    # ---- reading

    async def read(
        self, service: str, revision: str | None, *, tail: int, follow: bool
    ) -> AsyncIterator[LogLine]:
        queue: asyncio.Queue[LogLine] = asyncio.Queue(maxsize=10000)
        key = (service, revision, queue)
        if follow:  # before the first poll, so that no line falls between tail and follow
            self._followers.add(key)
        try:
            await self.poll()
            lines = sorted(
                (
                    line
                    for s in list(self._sources.values())
                    if s.service == service and revision in (None, s.revision)
                    for line in s.tail
                ),
                key=lambda line: line.at,
            )
            shown = lines[-tail:] if tail > 0 else []
            # lines queued so far came from polls before the snapshot: skip those shown
            # (``shown`` holds them, so their ids stay theirs while we compare)
            already, shown_ids = queue.qsize(), {id(line) for line in shown}
            for line in shown:
                yield line
            while follow:
                line = await queue.get()
                if already:
                    already -= 1
                    if id(line) in shown_ids:
                        continue
                yield line
        finally:
            self._followers.discard(key)


def error_block(lines: Sequence[LogLine]) -> list[LogLine]:
    """The last traceback in ``lines`` (from ``Traceback (most recent call last):`` to the
    exception line), or else the last run of lines naming an Error, Exception or FATAL."""
    starts = [i for i, line in enumerate(lines) if line.text.startswith(_TRACEBACK)]
    if starts:
        block = [lines[starts[-1]]]
        for line in lines[starts[-1] + 1 :]:
            block.append(line)
            if line.text and not line.text[0].isspace():
                break  # the exception line ends it
        return block
    hits = [i for i, line in enumerate(lines) if _ERROR.search(line.text)]
    if not hits:
        return []
    first = hits[-1]
    while first - 1 in hits:
        first -= 1
    return list(lines[first : hits[-1] + 1])


def _bounded(block: list[LogLine], limit: int) -> list[LogLine]:
    """A long block keeps its first line and its end (where the exception is)."""
    if len(block) <= limit:
        return block
    return [block[0], *block[len(block) - limit + 1 :]]


def _stamped(text: str, default: datetime) -> tuple[datetime, str]:
    """A platform line is ``<ISO time> <text>``: its own time, not the time it was read."""
    stamp, _, rest = text.partition(" ")
    try:
        return datetime.fromisoformat(stamp), rest
    except ValueError:
        return default, text
