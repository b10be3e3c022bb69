"""The Python router: the ingress on its own event loop (``--router python``), and the
activator and own endpoints behind HAProxy.

Routing (first match wins):

1. ``Host: {service}.{domain}`` reaches the service's weighted split (a sticky split:
   the revision whose buckets hold the request's key, ``sos.traffic.sticky_revision``,
   when it carries one);
   ``Host: {tag}-{service}.{domain}`` or a ``Sos-Tag: {tag}`` header reaches a tagged
   revision directly;
2. ``/s/{service}/...`` (or ``/s/{tag}-{service}/...``) does the same for clients that
   cannot set a Host; the prefix is stripped before the request is passed on;
3. ``/r/{revision}/...`` reaches one revision, routed or not (try a revision before it
   gets traffic);
4. anything else is the router's own: ``/metrics`` (Prometheus) and ``/healthz``.

This module is the router's control: the table, resolution, the activator, counters and
URLs. The HTTP/1.1 proxying itself (client and instance connections) is ``proxy.py``. The
routing table is immutable: ``update`` swaps it in one assignment, so a request sees
either the old or the new table, and a request already sent to an instance finishes there.

A revision without a ready instance sends its requests to the activator path: the
request is held, ``on_cold(revision)`` asks the backend to start an instance, and the
request goes on as soon as one is ready, or gets a 503 that says why after
``activation_timeout`` seconds.

A service with shadow revisions gets a copy of a share of its split requests mirrored to
them after the caller's answer (``shadow.py``); ``shadow_report`` compares the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import replace
from typing import Any

from sos import traffic
from sos.models import ShadowComparison, revision_parts, summary_line
from sos.runtime.local.ingress.listen import listen_socket
from sos.runtime.local.ingress.python.proxy import ClientConnection
from sos.runtime.local.ingress.python.shadow import Mirror
from sos.runtime.local.ingress.table import (
    ActivatorKey,
    Endpoint,
    RevisionTarget,
    RoutingTable,
    ShadowTarget,
    sticky_key,
)
from sos.runtime.local.metrics import ConcurrencyMeter, MetricsCollector, render

__all__ = ["Router"]

log = logging.getLogger(__name__)

#: how often the shadow comparisons are written down (and at close)
SHADOW_SAVE_SECONDS = 5.0


def for_callers(target: RevisionTarget, revision: str) -> str:
    """Why ``revision`` cannot answer, as its service's callers may read it: one line,
    never the instance's log lines (pids, ports, paths), which stay in ``sos logs``."""
    why = summary_line(target.unavailable)
    if why.endswith("is being removed"):
        return why
    number = revision_parts(revision)[1]
    ref = str(int(number)) if number.isdigit() else revision
    return (
        f"service {target.service!r} is unavailable: its revision {revision} failed ({why}); "
        f"its owners can run `sos logs {target.service} --revision {ref}`"
    )


def _prefixed(path: bytes) -> tuple[str, bytes]:
    """``/s/NAME/rest`` (or ``/r/NAME/rest``) as NAME and the path to pass on (``/rest``)."""
    rest = path[3:]
    cut = rest.find(b"/")
    name = (rest if cut < 0 else rest[:cut]).split(b"?", 1)[0].decode("latin-1")
    passed = rest[len(name) :] or b"/"
    return name, b"/" + passed if passed.startswith(b"?") else passed


class Router:
    """The ingress server. ``start`` binds it; ``update`` swaps the routing table."""

    data_path = "python"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        domain: str = "localhost",
        activation_timeout: float = 30.0,
        request_timeout: float = 300.0,
        on_cold: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.request_timeout = request_timeout
        self.port = port
        self.domain = domain.strip(".").lower()
        self._suffix = "." + self.domain
        self.activation_timeout = activation_timeout
        self.on_cold = on_cold
        self.clock = clock
        self.table = RoutingTable()
        self.metrics = MetricsCollector()
        self.meters: dict[str, ConcurrencyMeter] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._server: asyncio.Server | None = None
        #: the client connections open now (the proxy adds and removes itself)
        self.connections: set[ClientConnection] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        #: the port clients use, when another proxy listens in front (URLs and messages)
        self.public_port: int | None = None
        #: who may read ``/metrics``: None, anyone (a router of its own, in tests); "" no one
        #: (the server's default: the router port is public, the counters are per team);
        #: else requests with ``Authorization: Bearer <token>`` (a Prometheus scraper)
        self.metrics_token: str | None = None
        #: endpoints no longer in the table that still serve requests
        self._leaving: dict[str, Endpoint] = {}
        #: listeners that serve one revision each (for a proxy in front: its activator)
        self._activators: dict[ActivatorKey, asyncio.Server] = {}
        #: shadow traffic: the copies, their queue and the comparisons
        self.mirror = Mirror(lambda: self.table, clock, self._cold, self.meter)

    def _cold(self, revision: str) -> None:
        if self.on_cold is not None:
            self.on_cold(revision)

    # ---- lifecycle

    def bind(self) -> None:
        """Take the router's port now (before the event loop runs), so that a port in use
        is a clear error at start-up. ``start`` binds by itself when this was not called."""
        if self._socket is not None:
            return
        self._socket = listen_socket(self.host, self.port)
        self.port = self._socket.getsockname()[1]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.bind()
        assert self._socket is not None
        self._server = await loop.create_server(
            lambda: ClientConnection(self), sock=self._socket, backlog=1024
        )
        self._socket = None  # the server owns it now
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep(), name="sos-router-timeouts")
        if self.public_port is None:
            log.info(
                "router listening on http://%s:%d (domain %s)", self.host, self.port, self.domain
            )

    async def _sweep(self) -> None:
        """Answer 504 for requests an instance has not answered within ``request_timeout``
        (a sweep a few times a second costs less than a timer per request); keep the shadow
        comparisons every few seconds."""
        saved = self.clock()
        while True:
            await asyncio.sleep(min(1.0, self.request_timeout / 3))
            now = self.clock()
            for conn in list(self.connections):
                conn.check_timeout(now, self.request_timeout)
                conn.check_idle(now)
            if now - saved >= SHADOW_SAVE_SECONDS:
                saved = now
                text = self.mirror.snapshot()
                if text is not None:
                    await asyncio.to_thread(self.mirror.write, text)

    async def activator(self, key: ActivatorKey) -> int:
        """The port of a listener whose requests all go to revision ``key[1]`` of service
        ``key[0]`` (counted under tag ``key[2]``): held until it has a ready instance, as
        any request here is. A proxy in front sends a revision's requests there while the
        revision has no ready instance."""
        server = self._activators.get(key)
        if server is None:
            loop = asyncio.get_running_loop()
            server = await loop.create_server(
                lambda: ClientConnection(self, key), "127.0.0.1", 0, backlog=1024
            )
            self._activators[key] = server
        return int(server.sockets[0].getsockname()[1])

    def activators(self) -> set[ActivatorKey]:
        return set(self._activators)

    def close_activator(self, key: ActivatorKey) -> None:
        """Stop listening for ``key`` (requests it holds still finish)."""
        server = self._activators.pop(key, None)
        if server is not None:
            server.close()

    async def close(self, *, keep_serving: bool | None = None) -> None:
        """Stop listening and end every connection (``keep_serving`` has nothing to keep
        here: the router is part of the server's process)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for key in list(self._activators):
            self.close_activator(key)
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                conn.close()
            await self._server.wait_closed()
            self._server = None
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.cancel()
        self._waiters.clear()
        await self.mirror.close()

    # ---- routing state

    def update(self, table: RoutingTable) -> None:
        """Swap the routing table (atomic: one assignment) and wake held requests."""
        previous = self.table
        self.table = RoutingTable(
            table.services.values(), table.revisions.values(), previous=previous
        )
        # endpoints that left the table still count their requests until those are done
        kept = {e.instance for t in self.table.revisions.values() for e in t.endpoints}
        for old in previous.revisions.values():
            for endpoint in old.endpoints:
                if endpoint.instance not in kept and endpoint.in_flight > 0:
                    self._leaving[endpoint.instance] = endpoint
        for instance in kept:
            self._leaving.pop(instance, None)
        for revision, futures in list(self._waiters.items()):
            target = self.table.revisions.get(revision)
            if target is None or target.endpoints or target.unavailable:
                for future in futures:
                    if not future.done():
                        future.set_result(None)
                del self._waiters[revision]

    async def settle(self) -> None:
        """Wait until the last ``update`` serves requests (at once here: one assignment)."""

    def concurrency(self, revision: str, now: float) -> float:
        """Average requests in flight at ``revision`` since the previous call (the
        autoscaler's input)."""
        return self.meter(revision).take(now)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the router keeps a reference to until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def meter(self, revision: str) -> ConcurrencyMeter:
        meter = self.meters.get(revision)
        if meter is None:
            meter = self.meters[revision] = ConcurrencyMeter(self.clock())
        return meter

    def in_flight(self, instance: str) -> int:
        """Requests an instance is serving now (to drain it before stopping it), also
        after it left the routing table."""
        leaving = self._leaving.get(instance)
        if leaving is not None:
            if leaving.in_flight > 0:
                return leaving.in_flight
            del self._leaving[instance]
        for target in self.table.revisions.values():
            for endpoint in target.endpoints:
                if endpoint.instance == instance:
                    return endpoint.in_flight
        return 0

    @property
    def _shown_port(self) -> int:
        return self.public_port or self.port

    def service_url(self, service: str) -> str:
        return f"http://{service}.{self.domain}:{self._shown_port}"

    def tag_url(self, service: str, tag: str) -> str:
        return f"http://{tag}-{service}.{self.domain}:{self._shown_port}"

    def revision_url(self, revision: str) -> str:
        return f"http://{self.domain}:{self._shown_port}/r/{revision}/"

    def shadow_report(self, service: str) -> list[ShadowComparison]:
        """The comparisons of ``service``'s shadows with its primaries, pair by pair."""
        return self.mirror.report(service)

    # ---- resolution (called per request)

    def resolve(
        self, host: bytes, path: bytes, tag_header: bytes | None, head: list[bytes] | None = None
    ) -> tuple[str, str, str, bytes, tuple[ShadowTarget, ...]] | tuple[int, str]:
        """Find (service, revision, tag, path to send, shadows to copy it to) or (status,
        message). ``head``: the request's headers (name, ": ", value, CRLF), for a sticky
        key."""
        table = self.table
        cached = table.hosts.get(host)
        if cached is None:
            name = host.split(b":", 1)[0].decode("latin-1").lower().rstrip(".")
            label = name[: -len(self._suffix)] if name.endswith(self._suffix) else None
            if len(table.hosts) < 4096:
                table.hosts[host] = (label,)
        else:
            label = cached[0]
        found = table.labels.get(label) if label else None
        if found is None and path.startswith(b"/s/"):
            label, path = _prefixed(path)
            found = table.labels.get(label)
            if found is None:
                return 404, self._unknown(label)
        elif found is None and path.startswith(b"/r/"):
            revision, path = _prefixed(path)
            target = table.revisions.get(revision)
            if target is None:
                return 404, f"no revision {revision!r} is deployed on this router"
            return target.service, revision, "", path, ()
        elif found is None:
            if label is not None:
                return 404, self._unknown(label)
            return 0, ""
        service, tagged, tag = found
        if tag_header:
            tag = tag_header.decode("latin-1").strip().lower()
            tagged = table.services[service].tags.get(tag)
            if tagged is None:
                return 404, f"service {service!r} has no tag {tag!r} (Sos-Tag header)"
        if tagged:
            return service, tagged, tag, path, ()
        route = table.services[service]
        chosen = None
        if route.split_by is not None:
            key = sticky_key(*route.split_by, path, head or [])
            if key is not None:
                chosen = traffic.sticky_revision(table.sticky[service], key)
        if chosen is None:
            chosen = table.balancers[service].pick()
        if chosen is None:
            return 503, f"service {service!r} has no traffic route yet: create a revision"
        shadows = self.mirror.choose(service, route.shadows) if route.shadows else ()
        return service, chosen, tag, path, shadows

    def _unknown(self, label: str) -> str:
        # names nothing that runs here: the router answers anyone, and the list of every
        # team's services is not theirs to read (the API lists what a token may see)
        return (
            f"no service {label!r} on this router; reach a service at "
            f"http://NAME.{self.domain}:{self._shown_port}/ or "
            f"http://{self.domain}:{self._shown_port}/s/NAME/"
        )

    async def wait_for_endpoint(
        self, revision: str, exclude: frozenset[str] = frozenset()
    ) -> RevisionTarget | str:
        """The activator: hold until ``revision`` has a ready instance (other than the
        ``exclude``d ones, which refused a connection), or say why not."""
        first = self.table.revisions.get(revision)
        hold = max(self.activation_timeout, (first.hold_seconds or 0.0) if first else 0.0)
        deadline = self.clock() + hold
        while True:
            target = self.table.revisions.get(revision)
            if target is None:
                return f"revision {revision!r} is no longer deployed"
            usable = tuple(e for e in target.endpoints if e.instance not in exclude)
            if usable:
                return (
                    target
                    if len(usable) == len(target.endpoints)
                    else replace(target, endpoints=usable)
                )
            if target.unavailable:
                return for_callers(target, revision)
            remaining = deadline - self.clock()
            if remaining <= 0:
                return (
                    f"revision {revision!r} has no ready instance after waiting "
                    f"{hold:g}s (it is starting from zero or failing; "
                    f"see `sos logs {target.service} --revision {revision}`)"
                )
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(revision, []).append(future)
            if self.on_cold is not None:
                self.on_cold(revision)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await future

    def own_response(self, path: bytes, head: Iterable[bytes] = ()) -> tuple[int, bytes, bytes]:
        """The router's own endpoints: (status, content type, body); ``head`` is the
        request's headers as the parser keeps them (name, ": ", value, CRLF)."""
        clean = path.split(b"?", 1)[0]
        if clean == b"/metrics":
            refused = self._metrics_refused(head)
            if refused is not None:
                return refused
            return 200, b"text/plain; version=0.0.4; charset=utf-8", render(self.metrics)
        if clean in (b"/healthz", b"/readyz"):
            return 200, b"text/plain", b"ok\n"
        return 404, b"text/plain; charset=utf-8", (self._unknown("") + "\n").encode()

    def _metrics_refused(self, head: Iterable[bytes]) -> tuple[int, bytes, bytes] | None:
        token = self.metrics_token
        if token is None:
            return None
        text = b"text/plain; charset=utf-8"
        if not token:
            return (
                404,
                text,
                (
                    b"the router's /metrics is off: every team's counters would be public here. "
                    b"Start the server with SOS_ROUTER_METRICS_TOKEN and scrape with "
                    b"'Authorization: Bearer <token>' (per-service metrics: the API)\n"
                ),
            )
        parts = list(head)  # name, b": ", value, b"\r\n" for each header passed on
        for name, value in zip(parts[0::4], parts[2::4], strict=False):
            scheme, _, given = value.strip().partition(b" ")
            bearer = name.strip().lower() == b"authorization" and scheme.lower() == b"bearer"
            if bearer and hmac.compare_digest(given.strip(), token.encode()):
                return None
        return 401, text, b"the router's /metrics needs 'Authorization: Bearer <token>'\n"
