"""The shared ingress: one HTTP listener for every service, with weighted splits and tags.

Routing (first match wins):

1. ``Host: {service}.{domain}`` reaches the service's weighted split;
   ``Host: {tag}-{service}.{domain}`` or a ``Sos-Tag: {tag}`` header reaches a tagged
   revision directly;
2. ``/s/{service}/...`` (or ``/s/{tag}-{service}/...``) does the same for clients that
   cannot set a Host; the prefix is stripped before the request is passed on;
3. ``/r/{revision}/...`` reaches one revision, routed or not (try a revision before it
   gets traffic);
4. anything else is the router's own: ``/metrics`` (Prometheus) and ``/healthz``.

The data path is written on asyncio protocols with ``httptools`` parsing and keep-alive
connection pools to the instances, and runs on uvloop when the server installs it. The
routing table is immutable: ``update`` swaps it in one assignment, so a request sees
either the old or the new table, and a request already sent to an instance finishes there.

A revision without a ready instance sends its requests to the activator path: the
request is held, ``on_cold(revision)`` asks the backend to start an instance, and the
request goes on as soon as one is ready, or gets a 503 that says why after
``activation_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, cast

import httptools

from sos.errors import BackendError
from sos.models import revision_parts, summary_line
from sos.runtime.local.metrics import ConcurrencyMeter, MetricsCollector, RequestStats, render

__all__ = ["Endpoint", "RevisionTarget", "Router", "RoutingTable", "ServiceRoute", "SmoothWeighted"]

log = logging.getLogger(__name__)

#: idle keep-alive connections to instances older than this are not reused (gunicorn
#: closes idle connections after 2 s; reusing one it is closing would fail a request)
UPSTREAM_IDLE_SECONDS = 1.0
MAX_IDLE_PER_ENDPOINT = 64
MAX_REQUEST_BODY = 64 * 2**20
#: the request line and headers together: above it, 431 (nginx's default is 8-32 KiB)
MAX_REQUEST_HEAD = 64 * 2**10
#: a request's head must arrive within this once it started (a slow client is cut off: 408)
HEADER_TIMEOUT = 10.0
#: a keep-alive connection without a request for this long is closed
IDLE_TIMEOUT = 75.0
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


# --------------------------------------------------------------------------- routing table


class Endpoint:
    """One ready instance as the router sees it: an address, its load, idle connections."""

    __slots__ = ("host", "idle", "in_flight", "instance", "port", "revision")

    def __init__(self, instance: str, revision: str, port: int, host: str = "127.0.0.1") -> None:
        self.instance = instance
        self.revision = revision
        self.host = host
        self.port = port
        self.in_flight = 0
        self.idle: list[tuple[float, _Upstream]] = []

    def __repr__(self) -> str:
        return f"Endpoint({self.instance!r}, {self.host}:{self.port})"


class SmoothWeighted:
    """Smooth weighted round-robin (nginx's): exact shares even over a few requests.

    Over any ``sum(weights)`` consecutive picks each name is chosen exactly its weight
    times, and the picks are spread out rather than bunched.
    """

    def __init__(self, weights: Iterable[tuple[str, int]]) -> None:
        pairs = [(name, weight) for name, weight in weights if weight > 0]
        self.names = [name for name, _ in pairs]
        self.weights = [weight for _, weight in pairs]
        self.total = sum(self.weights)
        self._current = [0] * len(pairs)

    def key(self) -> tuple[tuple[str, int], ...]:
        return tuple(zip(self.names, self.weights, strict=True))

    def pick(self) -> str | None:
        if len(self.names) < 2:
            return self.names[0] if self.names else None
        current = self._current
        best = 0
        for i, weight in enumerate(self.weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= self.total
        return self.names[best]


@dataclass(frozen=True)
class RevisionTarget:
    """A revision's ready instances; ``unavailable`` says why there is none to wait for."""

    id: str
    service: str
    endpoints: tuple[Endpoint, ...] = ()
    unavailable: str | None = None
    #: how long the activator holds a request for it (its start-up budget); None: the
    #: router's ``activation_timeout``
    hold_seconds: float | None = None


def _for_callers(target: RevisionTarget, revision: str) -> str:
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


@dataclass(frozen=True)
class ServiceRoute:
    """A service's split (revision id -> percent) and tags (tag -> revision id)."""

    name: str
    split: tuple[tuple[str, int], ...]
    tags: Mapping[str, str] = field(default_factory=dict)


class RoutingTable:
    """An immutable snapshot of every route; the router swaps whole tables."""

    def __init__(
        self,
        services: Iterable[ServiceRoute] = (),
        revisions: Iterable[RevisionTarget] = (),
        *,
        previous: RoutingTable | None = None,
    ) -> None:
        self.services: dict[str, ServiceRoute] = {s.name: s for s in services}
        self.revisions: dict[str, RevisionTarget] = {r.id: r for r in revisions}
        #: host label ("svc" or "tag-svc") -> (service, tagged revision or None, tag)
        self.labels: dict[str, tuple[str, str | None, str]] = {}
        self.balancers: dict[str, SmoothWeighted] = {}
        #: raw Host header -> host label (a cache filled by the router)
        self.hosts: dict[bytes, tuple[str | None]] = {}
        for route in self.services.values():
            self.labels[route.name] = (route.name, None, "")
            for tag, revision in route.tags.items():
                self.labels.setdefault(f"{tag}-{route.name}", (route.name, revision, tag))
            balancer = SmoothWeighted(route.split)
            old = previous.balancers.get(route.name) if previous else None
            # keep the rotation going when only instances changed, so shares stay exact
            self.balancers[route.name] = old if old and old.key() == balancer.key() else balancer


# --------------------------------------------------------------------------- the router


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a BackendError that says what to do."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise BackendError(
            f"the router cannot listen on {host}:{port}: {why} (another sos "
            "server?); choose another port with --router-port or SOS_ROUTER_PORT"
        ) from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


#: (service, revision, tag) of requests an activator listener holds for one revision
ActivatorKey = tuple[str, str, str]


class Router:
    """The ingress server. ``start`` binds it; ``update`` swaps the routing table."""

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
        self._connections: set[_ClientConnection] = set()
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
            lambda: _ClientConnection(self), sock=self._socket, backlog=1024
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
        (a sweep a few times a second costs less than a timer per request)."""
        while True:
            await asyncio.sleep(min(1.0, self.request_timeout / 3))
            now = self.clock()
            for conn in list(self._connections):
                conn.check_timeout(now, self.request_timeout)
                conn.check_idle(now)

    async def activator(self, key: ActivatorKey) -> int:
        """The port of a listener whose requests all go to revision ``key[1]`` of service
        ``key[0]`` (counted under tag ``key[2]``): held until it has a ready instance, as
        any request here is. A proxy in front sends a revision's requests there while the
        revision has no ready instance."""
        server = self._activators.get(key)
        if server is None:
            loop = asyncio.get_running_loop()
            server = await loop.create_server(
                lambda: _ClientConnection(self, key), "127.0.0.1", 0, backlog=1024
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

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for key in list(self._activators):
            self.close_activator(key)
        if self._server is not None:
            self._server.close()
            for conn in list(self._connections):
                conn.close()
            await self._server.wait_closed()
            self._server = None
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.cancel()
        self._waiters.clear()

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

    # ---- resolution (called per request)

    def resolve(
        self, host: bytes, path: bytes, tag_header: bytes | None
    ) -> tuple[str, str, str, bytes] | tuple[int, str]:
        """Find (service, revision, tag, path to send) or (status, message)."""
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
            rest = path[3:]
            cut = rest.find(b"/")
            label = (rest if cut < 0 else rest[:cut]).split(b"?", 1)[0].decode("latin-1")
            found = table.labels.get(label)
            if found is None:
                return 404, self._unknown(label)
            path = rest[len(label) :] or b"/"
            if path.startswith(b"?"):
                path = b"/" + path
        elif found is None and path.startswith(b"/r/"):
            rest = path[3:]
            cut = rest.find(b"/")
            revision = (rest if cut < 0 else rest[:cut]).split(b"?", 1)[0].decode("latin-1")
            target = table.revisions.get(revision)
            if target is None:
                return 404, f"no revision {revision!r} is deployed on this router"
            path = rest[len(revision) :] or b"/"
            if path.startswith(b"?"):
                path = b"/" + path
            return target.service, revision, "", path
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
        chosen = tagged or table.balancers[service].pick()
        if chosen is None:
            return 503, f"service {service!r} has no traffic route yet: create a revision"
        return service, chosen, tag, path

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
                return _for_callers(target, revision)
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


# --------------------------------------------------------------------------- connections


@dataclass(slots=True)
class _Request:
    method: bytes
    url: bytes
    #: the header lines to pass on (``Name: value\r\n``, hop-by-hop ones left out)
    head: list[bytes]
    forwarded_for: bytes
    proto: bytes
    body: bytes
    keep_alive: bool
    version: str
    host: bytes = b""
    tag: bytes | None = None


class _ClientConnection(asyncio.Protocol):
    """One client connection; requests on it are served one after another."""

    def __init__(self, router: Router, fixed: ActivatorKey | None = None) -> None:
        self.router = router
        #: every request on this connection goes to this (service, revision, tag)
        self.fixed = fixed
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[_Request] = deque()
        self.current: _Request | None = None
        self.upstream: _Upstream | None = None
        self.paused = False
        self.closed = False
        self._reading_paused = False
        self._url = b""
        self._head: list[bytes] = []
        self._forwarded_for = b"127.0.0.1"
        self._proto = b"http"
        self._body: list[bytes] = []
        self._body_size = 0
        self._host = b""
        self._tag: bytes | None = None
        # per-request accounting
        self._endpoint: Endpoint | None = None
        self._stats: RequestStats | None = None
        self._meter: ConcurrencyMeter | None = None
        self._revision = ""
        self._started = 0.0
        self._status = 0
        self._sent_head = False
        self._chunked = False
        self._tries = 0
        self._refused: set[str] = set()
        self._payload = b""
        self._fast = False
        self._revision_b = b""
        self._out: list[bytes] = []
        self._head_size = 0
        self._head_bytes = 0
        self._head_too_large = False
        self._in_head = False
        self._head_started = 0.0
        self._last_active = router.clock()

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.router._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.router._connections.discard(self)
        if self.current is not None:
            upstream, self.upstream = self.upstream, None
            if upstream is not None:
                upstream.abandon()  # mid-answer: the connection cannot be reused
            self._release_endpoint()
            self._finish(0 if not self._sent_head else self._status)
        self.queue.clear()

    def check_timeout(self, now: float, limit: float) -> None:
        """End the request in progress if its instance has taken longer than ``limit``."""
        if self._endpoint is None or self.current is None or now - self._started <= limit:
            return
        instance = self._endpoint.instance
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.abandon()
        self._release_endpoint()
        if self._sent_head:
            self.flush()
            self._finish(self._status)
            if self.transport is not None:
                self.transport.close()
            return
        self._fail(504, f"instance {instance} did not answer within {limit:g}s")

    def check_idle(self, now: float) -> None:
        """Close a connection whose request head takes longer than :data:`HEADER_TIMEOUT`
        (408) or that has sent nothing for :data:`IDLE_TIMEOUT` between requests."""
        if self.closed or self.current is not None or self.queue:
            return
        if self._in_head and now - self._head_started > HEADER_TIMEOUT:
            self._error_and_close(
                408, f"the request's headers did not arrive within {HEADER_TIMEOUT:g}s"
            )
        elif not self._in_head and now - self._last_active > IDLE_TIMEOUT:
            self.close()

    def pause_writing(self) -> None:
        self.paused = True
        if self.upstream is not None:
            self.upstream.pause(True)

    def resume_writing(self) -> None:
        self.paused = False
        if self.upstream is not None:
            self.upstream.pause(False)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._last_active = self.router.clock()
        if not self._in_head and self.current is None and not self.queue:
            self._in_head, self._head_started = True, self._last_active
            self._head_bytes = 0
        if self._in_head:  # counted before the parser buffers a huge header in memory
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end
            if self._head_bytes > MAX_REQUEST_HEAD:
                self._error_and_close(
                    431,
                    f"the request line and headers are above {MAX_REQUEST_HEAD // 1024} KiB",
                )
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._error_and_close(501, "protocol upgrades (WebSocket) are not supported yet")
        except httptools.HttpParserError as exc:
            if self._head_too_large:
                self._error_and_close(
                    431,
                    f"the request line and headers are above {MAX_REQUEST_HEAD // 1024} KiB",
                )
            else:
                self._error_and_close(400, f"malformed HTTP request: {exc}")

    # ---- httptools callbacks

    def on_message_begin(self) -> None:
        self._head_size = 0
        self._in_head, self._head_started = True, self.router.clock()
        self._url = b""
        self._head = []
        self._forwarded_for = b"127.0.0.1"
        self._proto = b"http"
        self._body = []
        self._body_size = 0
        self._host = b""
        self._tag = None

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_REQUEST_HEAD:
            self._head_too_large = True
            raise httptools.HttpParserError("request head too large")

    def on_headers_complete(self) -> None:
        self._in_head = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        lower = name.lower()
        if lower == b"host":
            self._host = value
        elif lower == b"sos-tag":
            self._tag = value
        elif lower == b"x-forwarded-for":
            self._forwarded_for = value + b", 127.0.0.1"
        elif lower == b"x-forwarded-proto":
            self._proto = value  # a TLS proxy in front said so
        elif lower == b"x-forwarded-host":
            pass  # set from Host below
        elif lower == b"expect":
            # the body is read here before it goes on: let the client send it now
            if value.lower() == b"100-continue" and self.transport is not None:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        elif lower not in _HOP_BY_HOP:
            self._head += [name, b": ", value, b"\r\n"]

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > MAX_REQUEST_BODY:
            raise httptools.HttpParserError(
                f"request body above {MAX_REQUEST_BODY // 2**20} MiB; send large files elsewhere"
            )
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        request = _Request(
            method=parser.get_method(),
            url=self._url,
            head=self._head,
            forwarded_for=self._forwarded_for,
            proto=self._proto,
            body=b"".join(self._body),
            keep_alive=parser.should_keep_alive(),
            version=parser.get_http_version(),
            host=self._host,
            tag=self._tag,
        )
        if self.current is None and not self.queue:
            self._serve(request)  # the usual case: nothing waiting before it
            return
        self.queue.append(request)
        if len(self.queue) > 8 and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        if self.current is None:
            self._next()

    # ---- serving

    def _next(self) -> None:
        if self.closed or not self.queue:
            return
        if self._reading_paused and self.transport is not None:
            self.transport.resume_reading()
            self._reading_paused = False
        self._serve(self.queue.popleft())

    def _serve(self, request: _Request) -> None:
        self.current = request
        router = self.router
        self._status = 0
        self._sent_head = False
        self._tries = 0
        self._refused = set()
        self._endpoint = None
        self._revision = ""
        if self.fixed is not None:
            found: tuple[str, str, str, bytes] | tuple[int, str] = (*self.fixed, request.url)
        else:
            found = router.resolve(request.host, request.url, request.tag)
        if len(found) == 2:
            status, message = found
            if status == 0:
                code, ctype, body = router.own_response(request.url, request.head)
                self._respond(code, body, ctype)
            else:
                self._respond(status, (message + "\n").encode())
            return
        service, revision, tag, path = found
        self._revision = revision
        self._revision_b = revision.encode() + b"\r\n"
        self._started = router.clock()
        self._stats = router.metrics.get(service, revision, tag)
        self._stats.in_flight += 1
        self._meter = router.meter(revision)
        self._meter.change(self._started, 1)
        self._payload = self._upstream_request(request, path)
        self._fast = request.keep_alive and request.version == "1.1" and request.method != b"HEAD"
        target = router.table.revisions.get(revision)
        if target is not None and target.endpoints:
            self._send(target)
        else:
            self.router.spawn(self._activate(revision))

    async def _activate(self, revision: str) -> None:
        target = await self.router.wait_for_endpoint(revision, frozenset(self._refused))
        if self.closed:
            return
        if isinstance(target, str):
            if self._refused:
                target += f"; instance {', '.join(sorted(self._refused))} refused the connection"
            self._fail(503, target)
        else:
            self._send(target)

    def _send(self, target: RevisionTarget) -> None:
        endpoints = target.endpoints
        endpoint = endpoints[0]
        if len(endpoints) > 1:
            for candidate in endpoints:
                if candidate.in_flight < endpoint.in_flight:
                    endpoint = candidate
        endpoint.in_flight += 1
        self._endpoint = endpoint
        self._tries += 1
        now = self.router.clock()
        idle = endpoint.idle
        while idle:
            since, upstream = idle.pop()
            if now - since < UPSTREAM_IDLE_SECONDS and upstream.usable():
                self.upstream = upstream
                upstream.send(self, self._payload, reused=True, fast=self._fast)
                return
            upstream.abandon()
        self.router.spawn(self._connect(endpoint))

    async def _connect(self, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(
                lambda: _Upstream(endpoint, self.router.clock), endpoint.host, endpoint.port
            )
        except OSError as exc:
            self._release_endpoint()
            self._refused.add(endpoint.instance)  # nothing was sent: safe to send elsewhere
            if self._retry():
                return
            self._fail(502, f"instance {endpoint.instance} refused the connection: {exc}")
            return
        if self.closed:
            upstream.abandon()
            self._release_endpoint()
            return
        self.upstream = upstream
        upstream.send(self, self._payload, reused=False, fast=self._fast)

    def _retry(self) -> bool:
        """When nothing was answered yet: send the request to another ready instance, or,
        when every one refused it (an instance killed before the supervisor noticed), hold
        it through the activator until a new instance is ready (as HAProxy's retries do)."""
        request = self.current
        if request is None or self.closed or self._sent_head or self._tries > 4:
            return False
        target = self.router.table.revisions.get(self._revision)
        if target is None:
            return False
        usable = tuple(e for e in target.endpoints if e.instance not in self._refused)
        if usable:
            self._send(replace(target, endpoints=usable))
        else:
            self.router.spawn(self._activate(self._revision))
        return True

    def _upstream_request(self, request: _Request, path: bytes) -> bytes:
        parts = [request.method, b" ", path, b" HTTP/1.1\r\n", *request.head]
        if request.host:
            parts += [b"Host: ", request.host, b"\r\nX-Forwarded-Host: ", request.host, b"\r\n"]
        parts += [b"X-Forwarded-For: ", request.forwarded_for, b"\r\n"]
        parts += [b"X-Forwarded-Proto: ", request.proto, b"\r\n"]
        if request.body or request.method in (b"POST", b"PUT", b"PATCH"):
            parts += [b"Content-Length: ", str(len(request.body)).encode(), b"\r\n"]
        parts += [b"\r\n", request.body]
        return b"".join(parts)

    # ---- called by the upstream connection

    def response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], length: int | None
    ) -> None:
        request = self.current
        if request is None or self.transport is None or self.closed:
            return
        self._status = status
        self._sent_head = True
        version = b"HTTP/1.1" if request.version == "1.1" else b"HTTP/1.0"
        parts = [version, b" ", str(status).encode(), b" ", reason, b"\r\n"]
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                parts += [name, b": ", value, b"\r\n"]
        parts += [b"Sos-Revision: ", self._revision.encode(), b"\r\n"]
        no_body = request.method == b"HEAD" or status in (204, 304) or status < 200
        self._chunked = False
        if length is not None:
            parts += [b"Content-Length: ", str(length).encode(), b"\r\n"]
        elif not no_body:
            if request.version == "1.1":
                self._chunked = True
                parts.append(b"Transfer-Encoding: chunked\r\n")
            else:
                request.keep_alive = False
        if not request.keep_alive:
            parts.append(b"Connection: close\r\n")
        elif request.version == "1.0":
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self._out.append(b"".join(parts))

    def raw(self, data: bytes, cut: int) -> None:
        """A passed-through answer starts: ``data[:cut]`` is its status line."""
        code = data[9:12]
        self._status = int(code) if code.isdigit() else 0
        self._sent_head = True
        self._chunked = False
        if not self.closed:
            self._out += [data[: cut + 2], b"Sos-Revision: ", self._revision_b, data[cut + 2 :]]

    def response_body(self, chunk: bytes) -> None:
        if self.transport is None or self.closed or not chunk:
            return
        if self._chunked:
            self._out += [b"%x\r\n" % len(chunk), chunk, b"\r\n"]
        else:
            self._out.append(chunk)

    def flush(self) -> None:
        """Write what the upstream delivered in one go (one system call per read)."""
        if self._out:
            out, self._out = self._out, []
            if self.transport is not None and not self.closed:
                self.transport.writelines(out)

    def response_done(self, *, close: bool = False) -> None:
        if self.transport is None:
            return
        if self._chunked and not self.closed:
            self._out.append(b"0\r\n\r\n")
        self.flush()
        self.upstream = None
        self._release_endpoint()
        request = self.current
        self._finish(self._status)
        if close or (request is not None and not request.keep_alive):
            self.transport.close()
            return
        if self.queue:
            self._next()

    def response_failed(self, reason: str, retryable: bool) -> None:
        self.upstream = None
        self._release_endpoint()
        if self.current is None or self.closed:
            return
        if retryable and self.current.method in _IDEMPOTENT and self._retry():
            return
        if self._sent_head:
            # part of an answer went out: the only honest thing left is to cut it short
            self.flush()
            self._finish(self._status)
            if self.transport is not None:
                self.transport.close()
            return
        self._fail(502, reason)

    # ---- endings

    def _release_endpoint(self) -> None:
        if self._endpoint is not None:
            self._endpoint.in_flight -= 1
            self._endpoint = None

    def _finish(self, status: int) -> None:
        if self.current is None:
            return
        self.current = None
        if self._stats is not None and self._meter is not None:
            now = self.router.clock()
            self._stats.done(status, now - self._started)
            self._meter.change(now, -1)
            self._stats = None
            self._meter = None

    def _fail(self, status: int, message: str) -> None:
        request = self.current
        self._finish(status)
        self.current = request
        self._respond(status, (message + "\n").encode())

    def _respond(
        self, status: int, body: bytes, ctype: bytes = b"text/plain; charset=utf-8"
    ) -> None:
        request = self.current
        self.current = None
        if self.transport is None or self.closed:
            return
        keep_alive = request is not None and request.keep_alive
        phrase = HTTPStatus(status).phrase.encode()
        head = [
            b"HTTP/1.1 %d %s\r\n" % (status, phrase),
            b"Content-Type: " + ctype + b"\r\n",
            b"Content-Length: %d\r\n" % len(body),
        ]
        if self._revision and status in (502, 503):
            head.append(b"Sos-Revision: " + self._revision.encode() + b"\r\n")
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        method = request.method if request else b"GET"
        self.transport.writelines([*head, b"" if method == b"HEAD" else body])
        if not keep_alive:
            self.transport.close()
        else:
            self._next()

    def _error_and_close(self, status: int, message: str) -> None:
        if self.transport is None or self.closed:
            return
        body = (message + "\n").encode()
        phrase = HTTPStatus(status).phrase.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, phrase, len(body), body)
        )
        self.transport.close()


class _Upstream(asyncio.Protocol):
    """A keep-alive connection to one instance; carries one request at a time."""

    def __init__(self, endpoint: Endpoint, clock: Callable[[], float]) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self._full_parser = httptools.HttpResponseParser(self)
        self._fast_parser = httptools.HttpResponseParser(_EndOfMessage(self))
        self.parser = self._full_parser
        self.transport: asyncio.Transport | None = None
        self.client: _ClientConnection | None = None
        self.closed = False
        self._reused = False
        self._got_bytes = False
        self._head = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._length: int | None = None
        self._chunked = False
        self._until_close = False
        self._complete = False
        self._fast = False
        self._first: bytes | None = None
        self._paused = False

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def send(self, client: _ClientConnection, payload: bytes, *, reused: bool, fast: bool) -> None:
        """Send one request. ``fast``: pass the answer through as the instance wrote it
        (only ``Sos-Revision`` is added), for HTTP/1.1 keep-alive clients and not HEAD."""
        assert self.transport is not None
        self.client = client
        self._fast = fast
        self._first = b"" if fast else None
        self.parser = self._fast_parser if fast else self._full_parser
        self._reused = reused
        self._got_bytes = False
        self._complete = False
        self._head = payload.startswith(b"HEAD ")
        self._reason = b""
        self._headers = []
        self._length = None
        self._chunked = False
        self._until_close = False
        if client.paused:
            self.pause(True)
        self.transport.write(payload)

    def pause(self, paused: bool) -> None:
        """Stop (or go on) reading the answer while the client cannot take more."""
        if self.transport is not None and paused != self._paused:
            self._paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def abandon(self) -> None:
        self.client = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        client = self.client
        try:
            if self._fast and client is not None:
                if self._first is not None:
                    data = self._first + data
                    cut = data.find(b"\r\n")
                    if cut < 0:
                        self._first = data  # the status line is not complete yet
                        return
                    self._first = None
                    client.raw(data, cut)
                else:
                    client._out.append(data)
            self.parser.feed_data(data)
            if client is not None and client._out:
                client.flush()
        except httptools.HttpParserError as exc:
            client, self.client = self.client, None
            self.abandon()
            if client is not None:
                client.response_failed(
                    f"instance {self.endpoint.instance} sent bad HTTP: {exc}", False
                )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        client, self.client = self.client, None
        if client is None:
            return
        if self._fast and self._got_bytes and self._first is None:
            # an answer delimited by the close, or cut short: either way the client must
            # see the end of the connection too
            client.response_done(close=True)
            return
        if self._until_close and self._headers is not None and self._got_bytes:
            client.response_done()
            return
        client.response_failed(
            f"instance {self.endpoint.instance} closed the connection before answering"
            + (f": {exc}" if exc else ""),
            not self._got_bytes and self._reused,
        )

    # ---- httptools callbacks

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length":
            try:
                self._length = int(value)
            except ValueError:
                self._length = None
        elif lower == b"transfer-encoding" and b"chunked" in value.lower():
            self._chunked = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        client = self.client
        chunked = self._chunked
        no_body = self._head or status in (204, 304) or status < 200
        if client is not None:
            length = self._length if not chunked else None
            if no_body and self._head:
                length = self._length
            client.response_head(status, self._reason or b"OK", self._headers, length)
        if no_body:
            self._done(keep=self.parser.should_keep_alive(), fresh_parser=True)
        elif not chunked and self._length is None:
            self._until_close = True

    def on_body(self, body: bytes) -> None:
        if self.client is not None:
            self.client.response_body(body)

    def on_message_complete(self) -> None:
        if not self._complete:
            self._done(keep=self.parser.should_keep_alive(), fresh_parser=False)

    def _done(self, *, keep: bool, fresh_parser: bool) -> None:
        self._complete = True
        client, self.client = self.client, None
        if fresh_parser:
            # a HEAD/204/304 answer has no body: the parser must not wait for one
            self._full_parser = self.parser = httptools.HttpResponseParser(self)
        idle = self.endpoint.idle
        if keep and self.usable() and len(idle) < MAX_IDLE_PER_ENDPOINT:
            self.pause(False)
            idle.append((self.clock(), self))
        else:
            self.abandon()
        if client is not None:
            client.response_done()


class _EndOfMessage:
    """The parser callbacks of a passed-through answer: only where it ends matters."""

    __slots__ = ("upstream",)

    def __init__(self, upstream: _Upstream) -> None:
        self.upstream = upstream

    def on_message_complete(self) -> None:
        self.upstream.on_message_complete()
