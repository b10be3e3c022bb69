"""What HAProxy's requests tell the router: in-flight counts and the request log.

HAProxy logs each request (route, server, status, time) into an in-memory ring that the
router reads over the stats socket every 100 ms (``stream_log``), counted in the same
``MetricsCollector`` as the Python router's requests (latency to the millisecond:
HAProxy's ``%Ta``). Requests in flight come from HAProxy's stats (``scur``), read every
100-500 ms (``Traffic.record``); the autoscaler's concurrency is the Python router's
(held requests) plus the larger of the log's average (Little's law) and the requests in
flight now (``Traffic.concurrency``).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping

from sos.runtime.local.ingress.haproxy.api import RuntimeAPI
from sos.runtime.local.metrics import MetricsCollector

__all__ = ["LOG_PERIOD", "LOG_RING", "Traffic", "stream_log"]

#: how often the request log is read
LOG_PERIOD = 0.1
#: the ring HAProxy logs requests to (its configuration's ``log ring@sos``)
LOG_RING = "sos"


class Traffic:
    """HAProxy's requests, counted per revision: ``revision_of`` names the revision of a
    server (an instance), ``route_of`` the (service, tag) of a slot."""

    def __init__(self, metrics: MetricsCollector) -> None:
        self.metrics = metrics
        #: (slot, server) -> requests in flight, and when they were read
        self.in_flight: dict[tuple[str, str], int] = {}
        self.read_at = -math.inf
        # autoscaler input from the log: revision -> seconds of requests since the last take
        self._area: defaultdict[str, float] = defaultdict(float)
        self._since: dict[str, float] = {}

    def record(
        self,
        stats: Mapping[tuple[str, str], int],
        taken: float,
        revision_of: Mapping[str, str],
        route_of: Mapping[str, tuple[str, str]],
    ) -> None:
        """Take HAProxy's in-flight counts, read at ``taken``."""
        self.in_flight, self.read_at = dict(stats), taken
        for stat in self.metrics.stats.values():
            stat.outside = 0
        for (slot, server), count in stats.items():
            revision = revision_of.get(server)
            route = route_of.get(slot)
            if count and revision and route:
                self.metrics.get(route[0], revision, route[1]).outside += count

    def outside(self, instance: str) -> int:
        """Requests HAProxy sends to ``instance`` now (as last read)."""
        return sum(n for (_, server), n in self.in_flight.items() if server == instance)

    def concurrency(self, revision: str, now: float, revision_of: Mapping[str, str]) -> float:
        """HAProxy's average requests in flight at ``revision`` since the previous call:
        the larger of the log's average (Little's law: seconds of requests finished per
        second) and the requests in flight now."""
        since = self._since.get(revision, now)
        self._since[revision] = now
        area = self._area.pop(revision, 0.0)
        average = area / (now - since) if now > since else 0.0
        current = sum(
            n for (_, server), n in self.in_flight.items() if revision_of.get(server) == revision
        )
        return max(average, float(current))

    def count(self, chunk: bytes, revision_of: Mapping[str, str]) -> None:
        """Count a batch of log lines (``route server status Ta termination``)."""
        for line, n in Counter(chunk.split(b"\n")).items():
            parts = line.split(b" ")
            if len(parts) != 5 or parts[0] == b"-":
                continue  # HAProxy's own events, or no route (the Python router counts)
            route, server, status, active, ending = parts
            revision = revision_of.get(server.decode())
            if revision is None:
                continue  # the activator and the Python router count their own
            try:
                _, service, tag = route.decode().split("/")
                code, millis = int(status), int(active)
            except ValueError:
                continue
            if ending[:1] == b"C" and ending[1:2] in b"RQCH":
                code = 0  # the client left before an answer
            seconds = (max(millis, 0) + 0.5) / 1000
            self.metrics.get(service, revision, tag).add(max(code, 0), seconds, n)
            self._area[revision] += seconds * n


async def stream_log(
    api: RuntimeAPI, count: Callable[[bytes], None], until: Callable[[], bool]
) -> None:
    """Pass batches of whole log lines to ``count`` until ``until()`` (HAProxy replaced,
    or the router closing) or HAProxy ends the stream."""
    async with api.events(LOG_RING) as (reader, writer):
        rest = b""
        # until HAProxy is replaced (the old one must not be kept alive by this reader)
        while not until():
            try:
                async with asyncio.timeout(1.0):
                    data = await reader.read(16 * 2**20)
            except TimeoutError:
                continue
            if not data:
                return
            data = rest + data
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            count(data[:cut])
            # read in batches: the lines wait in the socket meanwhile (one read per
            # 100 ms instead of one per few lines)
            writer.transport.pause_reading()  # type: ignore[attr-defined]
            await asyncio.sleep(LOG_PERIOD)
            writer.transport.resume_reading()  # type: ignore[attr-defined]
