"""Shadow traffic on the Python router: mirrored copies of requests, compared, discarded.

A service's route may name shadow revisions (``ServiceRoute.shadows``), each with the
share of the split's requests it gets a copy of (chosen deterministically: exactly
``percent`` of every 100 requests, spread out). The caller's request is served by its
primary revision as usual; the answer streams to the caller, and a bounded copy of it
(``CAPTURE_LIMIT``) is kept. Once the primary's answer is complete, the copy of the
request goes into a bounded queue (``Mirror.submit``: never waits; a full queue drops
the copy and counts it); a few workers send the copies to the shadows' ready instances
and hand both answers to ``sos.ranking.ShadowTally``. A shadow without a ready instance
gets no copy (counted as dropped; its start is asked for): scale-from-zero of a shadow
never delays a caller, and a slow or failing shadow shows only in the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httptools

from sos.models import ShadowComparison
from sos.ranking import ShadowTally
from sos.runtime.local.ingress.table import Endpoint, RoutingTable, ShadowTarget
from sos.runtime.local.metrics import ConcurrencyMeter

__all__ = ["CAPTURE_LIMIT", "Mirror", "MirrorJob", "parse_answer"]

log = logging.getLogger(__name__)

#: how much of an answer (primary's or shadow's) is kept for the comparison
CAPTURE_LIMIT = 2**20
#: copies waiting for a worker; above it they are dropped (and counted)
QUEUE_SIZE = 256
#: copies in flight to shadows at once
WORKERS = 8
#: a shadow that takes longer than this gives no answer (an error in the report)
SHADOW_TIMEOUT = 10.0


@dataclass(slots=True)
class MirrorJob:
    """One mirrored request: the primary's answer, and where the copies go."""

    service: str
    primary: str
    shadows: tuple[ShadowTarget, ...]
    payload: bytes
    status: int
    millis: float
    answer: bytes


class _Answer:
    """httptools callbacks collecting one answer's status and (bounded) body."""

    __slots__ = ("body", "done", "size")

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.size = 0
        self.done = False

    def on_body(self, body: bytes) -> None:
        if self.size < CAPTURE_LIMIT:
            self.body.append(body[: CAPTURE_LIMIT - self.size])
            self.size += len(body)

    def on_message_complete(self) -> None:
        self.done = True


def parse_answer(data: bytes) -> tuple[int, bytes, bool]:
    """(status, body, complete) of an HTTP/1.1 answer's bytes (as far as they go; a
    status of 0 when they do not hold a status line)."""
    answer = _Answer()
    parser = httptools.HttpResponseParser(answer)
    with contextlib.suppress(httptools.HttpParserError):
        parser.feed_data(data)
    try:
        status = parser.get_status_code()
    except httptools.HttpParserError:
        status = 0
    return status, b"".join(answer.body), answer.done


def _as_copy(payload: bytes, primary: str) -> bytes:
    """The request as the shadow gets it, marked as a copy of ``primary``'s."""
    cut = payload.find(b"\r\n") + 2
    return payload[:cut] + b"Sos-Shadow-Of: " + primary.encode() + b"\r\n" + payload[cut:]


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Mirror:
    """The copies of one router: which requests are mirrored, the queue, the tallies."""

    def __init__(
        self,
        table: Callable[[], RoutingTable],
        clock: Callable[[], float],
        on_cold: Callable[[str], None] | None = None,
        meter: Callable[[str], ConcurrencyMeter] | None = None,
        *,
        queue_size: int = QUEUE_SIZE,
        workers: int = WORKERS,
        timeout: float = SHADOW_TIMEOUT,
    ) -> None:
        self._table = table
        self.clock = clock
        self.on_cold = on_cold
        #: the shadow's concurrency meter: its copies keep it scaled as they need
        self.meter = meter
        self.timeout = timeout
        self.queue_size = queue_size
        self._workers_wanted = workers
        self._queue: asyncio.Queue[MirrorJob] | None = None
        self._workers: list[asyncio.Task[None]] = []
        #: (service, shadow) -> credit for the deterministic share (Bresenham)
        self._credit: dict[tuple[str, str], int] = {}
        #: (service, primary, shadow) -> the comparison so far
        self.tallies: dict[tuple[str, str, str], ShadowTally] = {}
        #: instance -> idle keep-alive connections to it (copies cost the shadow no
        #: handshake, and a threaded app no thread per copy)
        self._idle: dict[str, list[Connection]] = {}
        self._jobs = 0
        #: where the comparisons are kept across restarts of the server (None: memory only)
        self.file: Path | None = None
        self._saved: str = ""

    # ---- kept across restarts

    def load(self, file: Path) -> None:
        """Keep the comparisons in ``file`` from now on, starting from what it holds."""
        self.file = file
        try:
            saved = json.loads(file.read_text(encoding="utf-8"))
            for entry in saved:
                key = (str(entry.pop("service")), str(entry["primary"]), str(entry["shadow"]))
                self.tallies[key] = ShadowTally(**entry)
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("the shadow comparisons in %s are unreadable, starting anew: %s", file, exc)
            self.tallies.clear()

    def snapshot(self) -> str | None:
        """The comparisons as the file keeps them, when they changed since the last
        ``write`` (taken on the event loop, which changes them)."""
        if self.file is None:
            return None
        entries = [
            {"service": service, **dataclasses.asdict(tally)}
            for (service, _, _), tally in sorted(self.tallies.items())
        ]
        text = json.dumps(entries)
        return None if text == self._saved else text

    def write(self, text: str) -> None:
        """Write a ``snapshot`` to the file, atomically (off the event loop)."""
        if self.file is None:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(self.file)
            self._saved = text
        except OSError as exc:
            log.warning("cannot keep the shadow comparisons in %s: %s", self.file, exc)

    def save(self) -> None:
        text = self.snapshot()
        if text is not None:
            self.write(text)

    # ---- per request (on the caller's path: no I/O, no waiting)

    def choose(self, service: str, shadows: tuple[ShadowTarget, ...]) -> tuple[ShadowTarget, ...]:
        """The shadows this request is copied to: each gets exactly ``percent`` of every
        100 of the service's requests."""
        chosen = []
        for shadow in shadows:
            key = (service, shadow.revision)
            credit = self._credit.get(key, 0) + shadow.percent
            if credit >= 100:
                credit -= 100
                chosen.append(shadow)
            self._credit[key] = credit
        return tuple(chosen)

    def tally(self, service: str, primary: str, shadow: ShadowTarget) -> ShadowTally:
        key = (service, primary, shadow.revision)
        found = self.tallies.get(key)
        if found is None or found.items_path != shadow.items_path:
            found = ShadowTally(primary, shadow.revision, shadow.items_path)
            self.tallies[key] = found
        return found

    def submit(self, job: MirrorJob) -> None:
        """Queue the copies of one served request, or drop them (counted) when the queue
        is full."""
        if self._queue is None:
            self._queue = asyncio.Queue(self.queue_size)
            self._workers = [
                asyncio.create_task(self._work(), name=f"sos-router-mirror-{i}")
                for i in range(self._workers_wanted)
            ]
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            for shadow in job.shadows:
                self.tally(job.service, job.primary, shadow).dropped += 1

    def report(self, service: str) -> list[ShadowComparison]:
        """Every (primary, shadow) pair of ``service`` whose shadow it still has."""
        route = self._table().services.get(service)
        current = {s.revision for s in route.shadows} if route is not None else set()
        return [
            tally.report()
            for (name, _, shadow), tally in sorted(self.tallies.items())
            if name == service and shadow in current
        ]

    async def close(self) -> None:
        self.save()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._workers = []
        self._queue = None
        for pool in self._idle.values():
            for _, writer in pool:
                writer.close()
        self._idle.clear()

    # ---- the workers (off the caller's path)

    async def _work(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            job = await queue.get()
            try:
                await self._mirror(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # a copy must never take a worker down
                log.exception("mirroring a request of %s failed", job.service)

    def _prune(self, table: RoutingTable) -> None:
        """Close the idle connections to instances that left the table."""
        live = {e.instance for t in table.revisions.values() for e in t.endpoints}
        for instance in [i for i in self._idle if i not in live]:
            for _, writer in self._idle.pop(instance):
                writer.close()

    async def _mirror(self, job: MirrorJob) -> None:
        self._jobs += 1
        if self._jobs % 256 == 0:
            self._prune(self._table())
        primary: tuple[int, float, bytes] | None = None
        for shadow in job.shadows:
            tally = self.tally(job.service, job.primary, shadow)
            target = self._table().revisions.get(shadow.revision)
            if target is None or not target.endpoints:
                tally.dropped += 1  # no ready instance: no waiting for one
                if target is not None and not target.unavailable and self.on_cold is not None:
                    self.on_cold(shadow.revision)
                continue
            if primary is None:
                status, body, _ = parse_answer(job.answer)
                primary = (job.status or status, job.millis, body)
            tally.mirrored += 1
            endpoint = min(target.endpoints, key=lambda e: e.in_flight)
            meter = self.meter(shadow.revision) if self.meter is not None else None
            if meter is not None:
                meter.change(self.clock(), 1)
            try:
                answer = await self._send(endpoint, _as_copy(job.payload, job.primary))
            finally:
                if meter is not None:
                    meter.change(self.clock(), -1)
            tally.add(primary, answer)

    async def _send(self, endpoint: Endpoint, payload: bytes) -> tuple[int, float, bytes] | None:
        """The shadow's (status, ms, body), or None for no answer in time."""
        endpoint.in_flight += 1  # an instance that drains waits for its copies too
        started = self.clock()
        conn: Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                pool = self._idle.setdefault(endpoint.instance, [])
                while True:
                    reused = bool(pool)
                    conn = pool.pop() if pool else None
                    if conn is None:
                        conn = await asyncio.open_connection(endpoint.host, endpoint.port)
                    try:
                        answer, status, keep = await _exchange(conn, payload)
                    except OSError:
                        if not reused:
                            raise
                        answer, status, keep = None, 0, False
                    if answer is None and reused:
                        conn[1].close()  # an idle connection the instance had closed
                        continue
                    break
            if answer is None:
                return None
            if keep and len(pool) < MAX_IDLE:
                pool.append(conn)
                conn = None
            return status, (self.clock() - started) * 1000, b"".join(answer.body)
        except (OSError, TimeoutError, httptools.HttpParserError):
            return None
        finally:
            endpoint.in_flight -= 1
            if conn is not None:
                conn[1].close()


#: idle keep-alive connections kept per shadow instance
MAX_IDLE = 8


async def _exchange(conn: Connection, payload: bytes) -> tuple[_Answer | None, int, bool]:
    """Send one request, read its answer: (the answer, its status, whether the connection
    can carry another); no answer (None) when the connection closed before any byte."""
    reader, writer = conn
    writer.write(payload)
    answer = _Answer()
    parser = httptools.HttpResponseParser(answer)
    got = False
    while not answer.done:
        chunk = await reader.read(65536)
        if not chunk:
            if not got:
                return None, 0, False
            break  # an answer delimited by the close (its body is what came)
        got = True
        parser.feed_data(chunk)
    keep = answer.done and parser.should_keep_alive() and not reader.at_eof()
    return answer, parser.get_status_code(), keep
