"""The Python router's HTTP/1.1 proxy: client connections and keep-alive connections to
instances, on asyncio protocols with ``httptools`` parsing (and uvloop when the server
installs it).

A ``ClientConnection`` serves the requests of one client one after another: it asks the
``Router`` where each goes (``resolve``), holds it through the activator while its
revision has no ready instance, and sends it over an idle ``UpstreamConnection`` of the
least busy instance (or a new one), passing the answer back as it arrives. Idempotent
requests that found a dead instance go to another one; a request an instance does not
answer within the router's ``request_timeout`` gets a 504. A request the router copies to
shadow revisions keeps a bounded copy of the answer it streams to the client, and hands
both to the router's ``Mirror`` once the answer is complete (``shadow.py``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

import httptools

from sos.runtime.local.ingress.python.shadow import CAPTURE_LIMIT, MirrorJob
from sos.runtime.local.ingress.table import ActivatorKey, Endpoint, RevisionTarget, ShadowTarget
from sos.runtime.local.metrics import ConcurrencyMeter, RequestStats

if TYPE_CHECKING:
    from sos.runtime.local.ingress.python.router import Router

__all__ = ["ClientConnection", "UpstreamConnection"]

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


class ClientConnection(asyncio.Protocol):
    """One client connection; requests on it are served one after another."""

    def __init__(self, router: Router, fixed: ActivatorKey | None = None) -> None:
        self.router = router
        #: every request on this connection goes to this (service, revision, tag)
        self.fixed = fixed
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[_Request] = deque()
        self.current: _Request | None = None
        self.upstream: UpstreamConnection | None = None
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
        #: the shadows the request in progress is copied to, and its answer so far
        self._shadows: tuple[ShadowTarget, ...] = ()
        self._capture: bytearray | None = None
        self._service = ""

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.router.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.router.connections.discard(self)
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
            self._cut_short()
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
        found: tuple[str, str, str, bytes, tuple[ShadowTarget, ...]] | tuple[int, str]
        if self.fixed is not None:
            found = (*self.fixed, request.url, ())
        else:
            found = router.resolve(request.host, request.url, request.tag, request.head)
        if len(found) == 2:
            status, message = found
            if status == 0:
                code, ctype, body = router.own_response(request.url, request.head)
                self._respond(code, body, ctype)
            else:
                self._respond(status, (message + "\n").encode())
            return
        service, revision, tag, path, shadows = found
        self._service = service
        self._shadows, self._capture = (), None
        if shadows and request.method != b"HEAD":
            self._shadows, self._capture = shadows, bytearray()
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
                lambda: UpstreamConnection(endpoint, self.router.clock),
                endpoint.host,
                endpoint.port,
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
            capture = self._capture
            if capture is not None and len(capture) < CAPTURE_LIMIT:
                for part in out:
                    capture += part

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
            self._cut_short()
            return
        self._fail(502, reason)

    def _cut_short(self) -> None:
        """Part of an answer went out: the only honest thing left is to cut it short."""
        self.flush()
        self._finish(self._status)
        if self.transport is not None:
            self.transport.close()

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
            if self._shadows:
                self._mirror(status, now)

    def _mirror(self, status: int, now: float) -> None:
        """Hand the served request and its answer to the router's mirror (a queue: the
        copies go out after, never in the caller's way)."""
        shadows, self._shadows = self._shadows, ()
        capture, self._capture = self._capture, None
        if status <= 0:
            return
        self.router.mirror.submit(
            MirrorJob(
                self._service,
                self._revision,
                shadows,
                self._payload,
                status,
                (now - self._started) * 1000,
                bytes(capture or b""),
            )
        )

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


class UpstreamConnection(asyncio.Protocol):
    """A keep-alive connection to one instance; carries one request at a time."""

    def __init__(self, endpoint: Endpoint, clock: Callable[[], float]) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self._full_parser = httptools.HttpResponseParser(self)
        self._fast_parser = httptools.HttpResponseParser(_EndOfMessage(self))
        self.parser = self._full_parser
        self.transport: asyncio.Transport | None = None
        self.client: ClientConnection | None = None
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

    def send(self, client: ClientConnection, payload: bytes, *, reused: bool, fast: bool) -> None:
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

    def __init__(self, upstream: UpstreamConnection) -> None:
        self.upstream = upstream

    def on_message_complete(self) -> None:
        self.upstream.on_message_complete()
