"""HAProxy as the router's data path, programmed at runtime; the Python router behind it.

``HAProxyRouter`` offers what ``Router`` offers to the backend (``update`` with a routing
table, URLs, metrics, concurrency, in-flight counts) with HAProxy (Debian's 2.6, one
thread) on the router port. HAProxy does what every request needs: Host, path-prefix and
tag routing (``Sos-Tag`` too), the weighted split (smooth weighted round-robin across the
revisions' ready instances), ``Sos-Revision`` on responses, retries of idempotent
requests, and a request log for the metrics. The Python ``Router`` stays behind it, on
127.0.0.1, for everything else:

- the activator: a revision without a ready instance (scaled to zero, starting, failed) is
  an *activator listener* of the Python router in HAProxy's tables (one port per service,
  revision and tag); it holds the request, asks for an instance, and passes the request on
  when one is ready, or answers 503 with the reason;
- unknown hosts, ``/metrics``, ``/healthz`` and anything HAProxy has no route for (HAProxy's
  default backend), with the Python router's own answers.

**Tables and atomic changes.** A routing table becomes *groups* of servers (``plan_routes``,
pure): each service's split (a ``roundrobin`` backend, the split's percents divided across
the revisions' ready instances as integer weights) and each revision reached by tag or
``/r/`` (a ``leastconn`` backend). Each group lives in a *slot*, one of a pool of backends
declared in the configuration; one HAProxy map names the slot of every host, label, tag and
revision. A change fills fresh slots through the runtime API (``add server``), then swaps
the whole map at once (``prepare map`` / ``commit map``): each request sees the old table or
the new one, a request already in a slot finishes there, and no client connection is
closed. Slots that left the map are emptied once their requests are done. Only when a pool
runs out does HAProxy reload (a new process with more slots and the same listening socket,
the old one finishing its requests).

**Metrics.** HAProxy logs each request (route, server, status, time) into an in-memory ring
that the router reads over the stats socket every 100 ms, counted in the same
``MetricsCollector`` as the Python router's requests (latency to the millisecond: HAProxy's
``%Ta``). Requests in flight come from HAProxy's stats (``scur``), read every 100-500 ms;
the autoscaler's concurrency is the Python router's (held requests) plus the larger of the
log's average (Little's law) and the requests in flight now.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import ctypes
import io
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

from sos.errors import BackendError
from sos.runtime.local.metrics import ConcurrencyMeter, MetricsCollector
from sos.runtime.local.procs import alive
from sos.runtime.local.router import (
    ActivatorKey,
    Router,
    RoutingTable,
    listen_socket,
)

__all__ = ["HAProxyRouter", "Route", "Upstream", "plan_routes", "render_config", "split_weights"]

log = logging.getLogger(__name__)

#: HAProxy's largest server weight
MAX_WEIGHT = 256
#: slots of each kind in a fresh configuration (doubled by a reload when they run out)
INITIAL_SLOTS = 32
#: how often the request log is read, and the stats while something drains / otherwise
LOG_PERIOD = 0.1
STATS_FAST = 0.1
STATS_SLOW = 0.5
#: a slot that left the map is emptied this long after, once its requests are done
SLOT_GRACE = 1.0
#: how long ``settle`` waits for HAProxy to have a table
SETTLE_TIMEOUT = 30.0
#: a restarted server replaces the HAProxy it adopts once its table covers what that one
#: routes, or after this long (instances re-adopted, services applied again)
HANDOVER_TIMEOUT = 20.0
HANDOVER_POLL = 0.25
#: the file in the state directory that names the running HAProxy (pid and directory)
STATE_FILE = "haproxy.json"
SPLIT, REVISION = "r", "l"  # slot kinds: roundrobin (splits), leastconn (one revision)


class HAProxyError(BackendError):
    """HAProxy refused a command or could not start."""


# --------------------------------------------------------------------------- planning (pure)


@dataclass(frozen=True, order=True)
class Upstream:
    """A server of a group: a ready instance, or a revision's activator (``activator``)."""

    revision: str
    name: str  # the instance id; empty for an activator (named after its port later)
    host: str = "127.0.0.1"
    port: int = 0
    weight: int = 1
    activator: ActivatorKey | None = None


Group = tuple[Upstream, ...]


@dataclass(frozen=True)
class Route:
    """A map key (host, label, ``service@tag`` or ``revision@``) and the group it reaches."""

    key: str
    kind: str
    group: Group
    service: str
    tag: str = ""


def split_weights(parts: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Integer server weights for a split: ``parts`` is (percent, ready instances) per
    revision, the result each revision's instance weights, summing to shares exactly
    proportional to the percents. A revision without instances gets one weight (its
    activator); HAProxy's limit of 256 per server may leave some instances of a revision
    with a tiny share out of the split (never its share)."""
    counts = [max(1, n) for _, n in parts]
    k = max([1] + [math.ceil(n / p) for (p, _), n in zip(parts, counts, strict=True) if p > 0])
    while k > 1 and any(
        math.ceil(p * k / n) > MAX_WEIGHT for (p, _), n in zip(parts, counts, strict=True)
    ):
        k -= 1
    weights: list[list[int]] = []
    for (percent, _), n in zip(parts, counts, strict=True):
        total = percent * k
        used = max(1, min(n, total))
        base, extra = divmod(total, used)
        weights.append([base + 1] * extra + [base] * (used - extra) if total else [])
    divisor = reduce(math.gcd, [w for ws in weights for w in ws], 0) or 1
    return [[w // divisor for w in ws] for ws in weights]


def _revision_group(table: RoutingTable, revision: str, service: str, tag: str) -> Group:
    target = table.revisions.get(revision)
    if target is None or not target.endpoints:
        return (Upstream(revision, "", activator=(service, revision, tag)),)
    return tuple(sorted(Upstream(revision, e.instance, e.host, e.port) for e in target.endpoints))


def plan_routes(table: RoutingTable, domain: str) -> list[Route]:
    """What HAProxy must route for ``table``: one route per map key."""
    routes: dict[str, Route] = {}
    suffix = "." + domain
    for name, service in table.services.items():
        parts = [(rev, percent) for rev, percent in service.split if percent > 0]
        if not parts:
            continue  # no traffic yet: the Python router says so
        ready = []
        for revision, _ in parts:
            target = table.revisions.get(revision)
            ready.append(list(target.endpoints) if target else [])
        weights = split_weights([(p, len(e)) for (_, p), e in zip(parts, ready, strict=True)])
        group: list[Upstream] = []
        for (revision, _), endpoints, ws in zip(parts, ready, weights, strict=True):
            if not endpoints:
                group.append(Upstream(revision, "", weight=ws[0], activator=(name, revision, "")))
                continue
            for endpoint, weight in zip(endpoints, ws, strict=False):
                group.append(
                    Upstream(revision, endpoint.instance, endpoint.host, endpoint.port, weight)
                )
        split = Route(name + suffix, SPLIT, tuple(sorted(group)), name)
        routes[split.key] = split
        # /s/{name}/: the key ends with "/", which no Host header holds, so a service named
        # like the domain ("localhost") cannot take the platform's own path URLs
        routes[name + "/"] = Route(name + "/", SPLIT, split.group, name)
    for name, service in table.services.items():
        for tag, revision in service.tags.items():
            group = list(_revision_group(table, revision, name, tag))
            for key in (f"{tag}-{name}{suffix}", f"{tag}-{name}/"):
                routes.setdefault(key, Route(key, REVISION, tuple(group), name, tag))
            routes[f"{name}@{tag}"] = Route(f"{name}@{tag}", REVISION, tuple(group), name, tag)
    for revision, target in table.revisions.items():
        key = revision + "@"
        group = list(_revision_group(table, revision, target.service, ""))
        routes[key] = Route(key, REVISION, tuple(group), target.service)
    return list(routes.values())


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, order=True)
class Server:
    """A server as HAProxy knows it: name, address and weight, and its revision."""

    name: str
    address: str
    weight: int
    revision: str = ""


def _address(host: str, port: int) -> str:
    return f"ipv6@[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_config(
    *,
    socket_path: Path,
    down_map: Path,
    listen_fd: int,
    python_port: int,
    map_file: Path,
    request_timeout: float,
    threads: int,
    slots: Mapping[str, Sequence[Server]],
) -> str:
    """HAProxy's configuration: one frontend on the inherited listening socket, the
    Python router as the default backend, and the slot backends (``r*`` roundrobin, for
    splits; ``l*`` leastconn, for one revision) with the servers they hold now.

    ``down_map`` names the Python router's servers (``python``, activators ``_a*``): a
    refused connection to one means the server is down, and the 503 says so."""
    timeout = max(1, round(request_timeout * 1000))
    mapping = f"map({map_file})"
    lines = [
        "global",
        f"  nbthread {threads}",
        # expose-fd: a restarted server takes the listening socket from this process
        f"  stats socket {socket_path} mode 600 level admin expose-fd listeners",
        "  stats timeout 24h",
        f"  hard-stop-after {max(60, round(request_timeout) + 10)}s",
        "  log ring@sos local0",
        "ring sos",
        "  description sos-requests",
        "  format raw",
        "  maxlen 512",
        "  size 8388608",
        "defaults",
        "  mode http",
        "  log global",
        "  option dontlognull",
        '  log-format "%[var(txn.route)] %s %ST %Ta %tsc"',
        "  timeout connect 5s",
        f"  timeout client {timeout}ms",
        "  timeout http-request 10s",  # a request's headers arrive in 10 s or it is cut off
        f"  timeout http-keep-alive {timeout}ms",
        f"  timeout server {timeout}ms",
        "  timeout tunnel 1h",
        "  option forwardfor",
        "  option abortonclose",
        # a reload leaves clients' idle keep-alive connections open: the next request on
        # one is answered (Connection: close) instead of finding the connection closed
        "  option idle-close-on-response",
        "  retries 2",
        "  option redispatch 1",
        "  retry-on conn-failure empty-response",
        '  http-error status 502 content-type "text/plain; charset=utf-8" lf-string '
        '"instance %[srv_name] closed the connection or answered bad HTTP"',
        '  http-error status 503 content-type "text/plain; charset=utf-8" lf-string '
        f'"%[srv_name,map_reg({down_map},instance)] %[srv_name] refused the connection"',
        '  http-error status 504 content-type "text/plain; charset=utf-8" lf-string '
        f'"instance %[srv_name] did not answer within {request_timeout:g}s"',
        "frontend sos",
        f"  bind fd@{listen_fd}",
        "  http-request set-header X-Forwarded-Host %[req.hdr(host)] if { req.hdr(host) -m found }",
        "  http-request set-header X-Forwarded-Proto http "
        "unless { req.hdr(x-forwarded-proto) -m found }",
        "  http-request disable-l7-retry "
        "unless METH_GET or METH_HEAD or METH_OPTIONS or { method PUT DELETE TRACE }",
        # 1. Host: {label}.{domain}
        f"  http-request set-var(txn.route) req.hdr(host),field(1,:),lower,{mapping}",
        # 2. /s/{label}/... (the prefix goes), 3. /r/{revision}/...
        f"  http-request set-var(txn.spath) path,field(3,/),concat(/),{mapping} "
        "if !{ var(txn.route) -m found } { path_beg /s/ }",
        "  http-request set-var(txn.route) var(txn.spath) if { var(txn.spath) -m found }",
        f"  http-request set-var(txn.rpath) path,field(3,/),concat(@),{mapping} "
        "if !{ var(txn.route) -m found } { path_beg /r/ }",
        "  http-request set-var(txn.route) var(txn.rpath) if { var(txn.rpath) -m found }",
        # 4. Sos-Tag: the service's tagged revision, or the Python router's 404
        "  http-request set-var(txn.tag) req.hdr(sos-tag),lower if { req.hdr(sos-tag) -m found }"
        " { var(txn.route) -m found } !{ var(txn.rpath) -m found }",
        "  http-request set-var(txn.svc) var(txn.route),field(2,/) if { var(txn.tag) -m found }",
        f"  http-request set-var(txn.tagged) var(txn.svc),concat(@,txn.tag),{mapping} "
        "if { var(txn.tag) -m found }",
        "  http-request set-var(txn.route) var(txn.tagged) if { var(txn.tagged) -m found }",
        "  http-request unset-var(txn.route) "
        "if { var(txn.tag) -m found } !{ var(txn.tagged) -m found }",
        "  http-request set-path %[path,regsub(^/s/[^/]*/?,/)] "
        "if { var(txn.spath) -m found } { var(txn.route) -m found }",
        "  http-request set-path %[path,regsub(^/r/[^/]*/?,/)] if { var(txn.rpath) -m found }",
        # every answer names its revision; a refused connection is a 502, as in Python
        f"  http-after-response set-var(txn.rev) srv_name,concat(!),{mapping}",
        "  http-after-response set-header Sos-Revision %[var(txn.rev)] "
        "if { var(txn.rev) -m found }",
        "  http-after-response set-status 502 "
        "if { status 503 } { srv_name -m found } !{ var(txn.app) -m found } "
        f"!{{ srv_name,map_reg({down_map}) -m found }}",
        "  use_backend %[var(txn.route),field(1,/)] if { var(txn.route) -m found }",
        "  default_backend python",
        "backend python",
        "  http-response set-var(txn.app) bool(true)",
        f"  server python 127.0.0.1:{python_port}",
    ]
    for name, servers in slots.items():
        lines += [
            f"backend {name}",
            f"  balance {'roundrobin' if name.startswith(SPLIT) else 'leastconn'}",
            "  http-response set-var(txn.app) bool(true)",
        ]
        lines += [f"  server {s.name} {s.address} weight {s.weight}" for s in servers]
    return "\n".join(lines) + "\n"


#: the start of HAProxy's 503 when the Python router (the server) refuses a connection
DOWN_TEXT = (
    "sos server (the control plane) is down and is being restarted; retry shortly. "
    "Services with running instances still answer;"
)


#: what a key or value of the routing map may hold: host names, paths, slot, service, tag
#: and instance names; never a space or a line break, which would split an entry in two
MAP_TOKEN = re.compile(r"[A-Za-z0-9._:/!@%+-]{1,253}")


def safe_entries(entries: Mapping[str, str]) -> dict[str, str]:
    """``entries`` without any that HAProxy could misread (each one logged): a bad entry
    is never sent, so it cannot break another tenant's routes (names are checked long
    before they get here; this is the last line)."""
    safe: dict[str, str] = {}
    for key, value in entries.items():
        if MAP_TOKEN.fullmatch(key) and MAP_TOKEN.fullmatch(value):
            safe[key] = value
        else:
            log.error("HAProxy: routing entry %r -> %r is not safe to send; left out", key, value)
    return safe


def _map_text(entries: Mapping[str, str]) -> str:
    return "".join(f"{key} {value}\n" for key, value in sorted(safe_entries(entries).items()))


# --------------------------------------------------------------------------- the router


@dataclass
class _Slot:
    name: str
    servers: tuple[Server, ...] = ()
    #: when it left the map (None: in the map, or empty)
    unmapped_at: float | None = None
    deleted: set[str] = field(default_factory=set)


@dataclass
class _Process:
    """A HAProxy process: one this server started (``popen``), or one it adopted."""

    pid: int
    popen: subprocess.Popen[bytes] | None = None
    #: instances this process may still send requests to (for a process being replaced)
    instances: frozenset[str] = frozenset()

    @property
    def running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return alive(self.pid)

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (HAProxy's hard stop), SIGKILL after ``grace`` seconds."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            for _ in range(round(grace / 0.02)):
                if not self.running:
                    return
                await asyncio.sleep(0.02)


def _rebind_after(pid: int, host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """Soft-stop HAProxy ``pid`` (SIGUSR1: it closes its listeners and finishes what it
    serves) and bind ``host:port`` once it is free (SIGTERM after ``timeout`` seconds)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return listen_socket(host, port)
        except BackendError:
            if time.monotonic() > deadline + timeout:
                raise
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            time.sleep(0.02)


def adoptable(state_dir: Path) -> tuple[int, Path, int] | None:
    """The HAProxy a server of this state directory left serving, as (pid, its runtime
    directory), if it still runs. Its pid file names it; ``/proc/PID/cmdline`` must run
    HAProxy with the configuration of that directory: a pid that is gone, or reused by
    another process (another data dir's HAProxy too), is ignored."""
    path = state_dir / STATE_FILE
    try:
        record = json.loads(path.read_text())
        pid, folder, fd = int(record["pid"]), Path(record["dir"]), int(record["fd"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring %s, which is not a HAProxy pid file: %s", path, exc)
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        argv = []
    ours = (
        alive(pid)
        and "haproxy" in os.path.basename(argv[0].decode("utf-8", "replace"))
        and str(folder / "haproxy.cfg").encode() in argv
    )
    if not ours:
        log.info("%s names pid %d, which is not this data dir's HAProxy: ignored", path, pid)
        return None
    return pid, folder, fd


def _take_listener(pid: int, fd: int, host: str, port: int) -> socket.socket | None:
    """A copy of the listening socket HAProxy ``pid`` serves on (its descriptor ``fd``),
    taken with pidfd_getfd(2), if it listens on ``host:port`` (port 0: any): the same
    socket, so no connection waiting in it is lost. (HAProxy's own ``_getsocks`` does not
    hand over a socket it inherited.)"""
    pidfd = os.pidfd_open(pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        got = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd
        if got < 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    finally:
        os.close(pidfd)
    sock = socket.socket(fileno=got)
    try:
        address = sock.getsockname()
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening, address = 0, ("", 0)
    if listening and address[0] == host and port in (0, address[1]):
        sock.setblocking(False)
        return sock
    sock.close()
    return None


class HAProxyRouter:
    """The ingress with HAProxy as its data path; the same face as ``Router``."""

    data_path = "haproxy"

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
        haproxy: str | None = None,
        threads: int = 1,
        slots: int = INITIAL_SLOTS,
        state_dir: Path | None = None,
        keep_on_close: bool = False,
    ) -> None:
        found = haproxy or shutil.which("haproxy")
        if found is None:
            raise HAProxyError(
                "the haproxy router needs HAProxy: install it (apt-get install haproxy; "
                "scripts/setup does) or choose the Python router (--router python)"
            )
        self.haproxy = found
        self.python = Router(
            host="127.0.0.1",
            port=0,
            domain=domain,
            activation_timeout=activation_timeout,
            request_timeout=request_timeout,
            on_cold=on_cold,
            clock=clock,
        )
        self.host = host
        self.port = port
        self.domain = self.python.domain
        self.request_timeout = request_timeout
        self.clock = clock
        self.threads = threads
        #: where the pid file goes (None: HAProxy dies with this process, nothing to adopt)
        self.state_dir = state_dir
        #: a clean ``close`` leaves HAProxy serving for the next server to adopt
        self.keep_on_close = keep_on_close
        self._pool = slots
        #: the HAProxy a previous server left serving, until a new one replaces it
        self._adopted: _Process | None = None
        self._adopted_dir: Path | None = None
        #: what the adopted one routes: map keys, and revisions with instances in its map
        self._cover: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        self._handover_at = 0.0
        self._socket: socket.socket | None = None
        self._dir: Path | None = None
        self._current: _Process | None = None
        self._old: list[_Process] = []
        self._slots: dict[str, _Slot] = {}
        self._by_group: dict[tuple[Server, ...], str] = {}
        self._entries: dict[str, str] = {}
        self._revision_of: dict[str, str] = {}  # server name -> revision (for the log)
        self._route_of: dict[str, tuple[str, str]] = {}  # slot -> (service, tag)
        self._version = 0
        self._applied = 0
        self._settled = asyncio.Condition()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._relays: set[asyncio.Task[list[str]]] = set()
        self._closing = False
        # stats: (slot, server) -> requests in flight, and when they were read
        self._stats: dict[tuple[str, str], int] = {}
        self._stats_at = -math.inf
        self._unmapped: dict[str, float] = {}  # instance -> when it left every mapped slot
        # autoscaler input from the log: revision -> seconds of requests since the last take
        self._area: defaultdict[str, float] = defaultdict(float)
        self._since: dict[str, float] = {}

    # ---- what the backend sees (as on Router)

    @property
    def on_cold(self) -> Callable[[str], None] | None:
        return self.python.on_cold

    @on_cold.setter
    def on_cold(self, value: Callable[[str], None] | None) -> None:
        self.python.on_cold = value

    @property
    def activation_timeout(self) -> float:
        return self.python.activation_timeout

    @activation_timeout.setter
    def activation_timeout(self, value: float) -> None:
        self.python.activation_timeout = value

    @property
    def table(self) -> RoutingTable:
        return self.python.table

    @property
    def metrics(self) -> MetricsCollector:
        return self.python.metrics

    @property
    def meters(self) -> dict[str, ConcurrencyMeter]:
        return self.python.meters

    def meter(self, revision: str) -> ConcurrencyMeter:
        return self.python.meter(revision)

    def service_url(self, service: str) -> str:
        return self.python.service_url(service)

    def tag_url(self, service: str, tag: str) -> str:
        return self.python.tag_url(service, tag)

    def revision_url(self, revision: str) -> str:
        return self.python.revision_url(revision)

    # ---- lifecycle

    def bind(self) -> None:
        """Take the router's port now: a port in use is a clear error at start-up. The
        HAProxy a previous server of the same state directory left serving is adopted:
        its listening socket is taken over (it keeps serving until ``start``'s HAProxy
        replaces it)."""
        if self._socket is not None:
            return
        found = adoptable(self.state_dir) if self.state_dir is not None else None
        if found is not None:
            pid, folder, fd = found
            try:
                taken = _take_listener(pid, fd, self.host, self.port)
            except OSError as exc:
                # e.g. EPERM where ptrace is restricted (Yama ptrace_scope >= 1, not root):
                # no seamless handover, the router port is refused for a moment instead
                log.warning(
                    "cannot take over the listening socket of HAProxy (pid %d) left by the "
                    "previous server (%s): stopping it and binding the router port anew; "
                    "connections are refused until the new HAProxy runs",
                    pid,
                    exc,
                )
                self._old.append(_Process(pid))
                self._socket = _rebind_after(pid, self.host, self.port)
                self.port = self._socket.getsockname()[1]
                return
            self._adopted, self._adopted_dir = _Process(pid), folder
            if taken is not None:
                self._socket = taken
                self.port = taken.getsockname()[1]
                log.info("adopting HAProxy (pid %d), which serves %s:%d", pid, self.host, self.port)
                return
            log.info("HAProxy (pid %d) serves another address; it stops once ours runs", pid)
        self._socket = listen_socket(self.host, self.port)
        self.port = self._socket.getsockname()[1]

    async def start(self) -> None:
        self.bind()
        self.python.public_port = self.port
        await self.python.start()
        if self._adopted is not None and self._adopted_dir is not None:
            # the adopted HAProxy serves on until the new table covers what it routes
            self._dir = self._adopted_dir
            with contextlib.suppress(OSError, HAProxyError):
                await self._inspect_adopted(self._adopted)
            self._handover_at = self.clock() + HANDOVER_TIMEOUT
            (self._dir / "down.map").write_text(_down_map())
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="sos-haproxy-"))
            (self._dir / "routes.map").write_text("")
            (self._dir / "down.map").write_text(_down_map())
            self._current = await self._launch({})
        self._tasks = [
            asyncio.create_task(self._sync(), name="sos-haproxy-sync"),
            asyncio.create_task(self._read_log(), name="sos-haproxy-log"),
            asyncio.create_task(self._watch_stats(), name="sos-haproxy-stats"),
        ]
        log.info(
            "router listening on http://%s:%d (domain %s, data path HAProxy %s)",
            self.host,
            self.port,
            self.domain,
            self.haproxy,
        )

    async def close(self) -> None:
        """Stop HAProxy (every process of ours), or with ``keep_on_close`` leave it
        serving for the next server of this state directory to adopt."""
        self._closing = True
        for task in [*self._tasks, *self._relays]:
            task.cancel()
        for task in [*self._tasks, *self._relays]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        keep = self.keep_on_close and self.state_dir is not None
        procs = [p for p in (self._current, self._adopted, *self._old) if p is not None]
        if keep:
            log.info("HAProxy keeps serving (pid %s) for the next server", self._serving_pid())
        else:
            await asyncio.gather(*(proc.stop() for proc in procs))
            if self.state_dir is not None:
                (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        self._current, self._adopted, self._old = None, None, []
        await self.python.close()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._dir is not None and not keep:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def _serving_pid(self) -> int | None:
        serving = self._current or self._adopted
        return serving.pid if serving is not None else None

    async def _inspect_adopted(self, adopted: _Process) -> None:
        """Read what the adopted HAProxy routes (map keys, and the revisions of instances
        in mapped slots): it is replaced once the new table routes them all."""
        assert self._dir is not None
        entries: dict[str, str] = {}
        for line in (await self._cli(f"show map {self._dir / 'routes.map'}")).splitlines():
            parts = line.split()
            if len(parts) == 3:
                entries[parts[1]] = parts[2]
        mapped = {value.split("/")[0] for key, value in entries.items() if not key.endswith("!")}
        instances, needed = set(), set()
        for line in (await self._cli("show servers state")).splitlines():
            parts = line.split()
            if len(parts) > 3 and parts[0].isdigit():
                revision = entries.get(parts[3] + "!")
                if revision is not None:
                    instances.add(parts[3])
                    if parts[1] in mapped:
                        needed.add(revision)
        adopted.instances = frozenset(instances)
        keys = frozenset(key for key in entries if not key.endswith("!"))
        self._cover = (keys, frozenset(needed))

    def _covered(self) -> bool:
        """Whether the table routes all the adopted HAProxy routes, to ready instances."""
        keys, revisions = self._cover
        table = self.python.table
        planned = {route.key for route in plan_routes(table, self.domain)}
        ready = {rid for rid, target in table.revisions.items() if target.endpoints}
        return keys <= planned and revisions <= ready

    def _write_state(self, pid: int) -> None:
        if self.state_dir is None or self._dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / STATE_FILE
        assert self._socket is not None
        record = {
            "pid": pid,
            "dir": str(self._dir),
            "fd": self._socket.fileno(),
            "host": self.host,
            "port": self.port,
        }
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record) + "\n")
        os.replace(temporary, path)

    # ---- routing state

    def update(self, table: RoutingTable) -> None:
        """Swap the routing table: at once in the Python router (the activator), and in
        HAProxy as soon as the runtime API has it (``settle`` waits for that)."""
        self.python.update(table)
        self._version += 1
        self._wake.set()

    async def settle(self) -> None:
        """Wait (up to 30 s) until HAProxy routes by the last table given to ``update``."""
        version = self._version
        async with asyncio.timeout(SETTLE_TIMEOUT), self._settled:
            await self._settled.wait_for(lambda: self._applied >= version or self._closing)

    def in_flight(self, instance: str) -> int:
        """Requests ``instance`` serves now, through HAProxy or the activator. While it is
        still in HAProxy's tables, or HAProxy's stats predate its removal, it counts as
        busy (at least 1): an instance is stopped only once HAProxy says it is idle."""
        count = self.python.in_flight(instance)
        outside = sum(n for (_, server), n in self._stats.items() if server == instance)
        if any(instance in proc.instances for proc in self._old):
            return count + max(1, outside)
        for slot in self._slots.values():
            if slot.unmapped_at is None and any(s.name == instance for s in slot.servers):
                return count + max(1, outside)
        removed = self._unmapped.get(instance)
        if removed is not None and self._stats_at <= removed:
            return count + max(1, outside)
        return count + outside

    def concurrency(self, revision: str, now: float) -> float:
        """Average requests in flight at ``revision`` since the previous call: the held
        ones (Python), plus HAProxy's: the larger of the log's average (Little's law:
        seconds of requests finished per second) and the requests in flight now."""
        held = self.python.concurrency(revision, now)
        since = self._since.get(revision, now)
        self._since[revision] = now
        area = self._area.pop(revision, 0.0)
        average = area / (now - since) if now > since else 0.0
        current = sum(
            n for (_, server), n in self._stats.items() if self._revision_of.get(server) == revision
        )
        return held + max(average, float(current))

    # ---- HAProxy's process

    def _config(self, slots: Mapping[str, Sequence[Server]], listen_fd: int) -> Path:
        assert self._dir is not None
        text = render_config(
            socket_path=self._dir / "admin.sock",
            down_map=self._dir / "down.map",
            listen_fd=listen_fd,
            python_port=self.python.port,
            map_file=self._dir / "routes.map",
            request_timeout=self.request_timeout,
            threads=self.threads,
            slots=slots,
        )
        path = self._dir / "haproxy.cfg"
        path.write_text(text)
        return path

    async def _launch(self, slots: Mapping[str, Sequence[Server]], *, replace: int = 0) -> _Process:
        """Start HAProxy with ``slots`` (at least the pool size of each kind); with
        ``replace``, or a HAProxy adopted from a previous server, the new process takes
        over from that pid (a seamless reload: ``-sf``, the old one finishes its requests
        and exits)."""
        assert self._socket is not None and self._dir is not None
        full = dict(slots)
        for kind in (SPLIT, REVISION):
            have = sum(1 for name in full if name.startswith(kind))
            for i in range(have, max(have, self._pool)):
                full.setdefault(f"{kind}{i}", ())
        fd = self._socket.fileno()
        config = self._config(full, fd)
        argv = [self.haproxy, "-db", "-f", str(config)]
        adopted = self._adopted if self._adopted is not None and self._adopted.running else None
        if replace or adopted is not None:
            argv += ["-sf", str(replace or (adopted.pid if adopted else 0))]
        # a plain Popen: asyncio's transport would kill a HAProxy left serving on exit
        popen = await asyncio.to_thread(
            subprocess.Popen,
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(fd,),
            preexec_fn=_die_with_parent if self.state_dir is None else _detach,
        )
        process = _Process(popen.pid, popen)
        assert popen.stdout is not None
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), popen.stdout)
        output = asyncio.create_task(_relay(reader))
        self._relays.add(output)
        output.add_done_callback(self._relays.discard)
        deadline = self.clock() + 15
        while True:
            try:
                info = await self._cli("show info")
                if f"Pid: {popen.pid}\n" in info:
                    break
            except (OSError, HAProxyError):
                pass
            if not process.running or self.clock() > deadline:
                await process.stop(grace=0)
                lines = await output
                raise HAProxyError(
                    "HAProxy did not start: " + (" ".join(lines[-5:]) or "no output")
                )
            await asyncio.sleep(0.02)
        self._slots = {name: _Slot(name, tuple(servers)) for name, servers in full.items()}
        self._by_group = {s.servers: name for name, s in self._slots.items() if s.servers}
        if self._adopted is not None:
            log.info(
                "HAProxy (pid %d) took over from pid %d, which finishes its requests and exits",
                popen.pid,
                self._adopted.pid,
            )
            self._old.append(self._adopted)
            self._adopted = None
        self._write_state(popen.pid)
        return process

    async def _reload(
        self, slots: Mapping[str, Sequence[Server]], entries: Mapping[str, str]
    ) -> None:
        """A new HAProxy with these slots and map; the old one finishes its requests."""
        assert self._dir is not None and self._current is not None
        (self._dir / "routes.map").write_text(_map_text(entries))
        old = self._current
        old.instances = frozenset(s.name for slot in self._slots.values() for s in slot.servers)
        self._current = await self._launch(slots, replace=old.pid)
        self._entries = dict(entries)
        self._old.append(old)
        log.info("HAProxy reloaded with %d slots of each kind", self._pool)

    async def _cli(self, command: str, payload: str | None = None) -> str:
        """One command on HAProxy's stats socket; its answer."""
        assert self._dir is not None
        reader, writer = await asyncio.open_unix_connection(str(self._dir / "admin.sock"))
        try:
            text = command + (" <<\n" + payload + "\n" if payload is not None else "\n")
            writer.write(text.encode())
            await writer.drain()
            async with asyncio.timeout(10):
                answer = await reader.read()
        finally:
            writer.close()
        return answer.decode("utf-8", "replace")

    async def _command(self, command: str, payload: str | None = None, expect: str = "") -> str:
        answer = await self._cli(command, payload)
        if expect not in answer or "nknown" in answer or "rror" in answer:
            raise HAProxyError(f"HAProxy refused {command!r}: {answer.strip()[:300]}")
        return answer

    # ---- applying tables

    async def _sync(self) -> None:
        while True:
            # asyncio.timeout, not wait_for (Python 3.11 can lose a cancellation)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HANDOVER_POLL if self._adopted else None):
                    await self._wake.wait()
            self._wake.clear()
            version = self._version
            try:
                async with self._lock:
                    handover = self._adopted is not None and self._adopted.running
                    if handover and not self._covered() and self.clock() < self._handover_at:
                        continue  # the adopted HAProxy serves the last table meanwhile
                    await self._ensure_running()
                    await self._apply()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("HAProxy: the routing table could not be applied; reloading")
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    async with self._lock:
                        await self._resync()
                self._wake.set()
                continue
            async with self._settled:
                self._applied = max(self._applied, version)
                self._settled.notify_all()

    async def _resolve(
        self, routes: Iterable[Route]
    ) -> dict[str, tuple[Route, tuple[Server, ...]]]:
        """Routes with their servers as HAProxy names them (activators get their ports)."""
        resolved: dict[str, tuple[Route, tuple[Server, ...]]] = {}
        for route in routes:
            servers = []
            for up in route.group:
                if up.activator is not None:
                    port = await self.python.activator(up.activator)
                    servers.append(Server(f"_a{port}", f"127.0.0.1:{port}", up.weight))
                else:
                    address = _address(up.host, up.port)
                    servers.append(Server(up.name, address, up.weight, up.revision))
            resolved[route.key] = (route, tuple(sorted(servers)))
        return resolved

    async def _apply(self) -> None:
        table = self.python.table
        resolved = await self._resolve(plan_routes(table, self.domain))
        wanted = {servers: route.kind for route, servers in resolved.values()}
        fresh = [servers for servers in wanted if servers not in self._by_group]
        free = {
            kind: [
                n
                for n, s in sorted(self._slots.items(), key=lambda kv: int(kv[0][1:]))
                if n.startswith(kind) and not s.servers
            ]
            for kind in (SPLIT, REVISION)
        }
        need = Counter(wanted[servers] for servers in fresh)
        if any(need[kind] > len(free[kind]) for kind in need):
            await self._grow(resolved)
            return
        for servers in fresh:
            name = free[wanted[servers]].pop(0)
            for server in servers:
                await self._command(
                    f"add server {name}/{server.name} {server.address} weight {server.weight} "
                    "pool-max-conn -1 pool-purge-delay 5s",
                    expect="New server registered",
                )
                await self._command(f"set server {name}/{server.name} state ready")
            self._slots[name] = _Slot(name, servers)
            self._by_group[servers] = name
        now = self.clock()
        mapped: set[str] = set()
        routes_of: dict[str, tuple[str, str]] = {}
        entries: dict[str, str] = {}
        for route, servers in resolved.values():
            name = self._by_group[servers]
            mapped.add(name)
            entries[route.key] = f"{name}/{route.service}/{route.tag}"
            routes_of.setdefault(name, (route.service, route.tag))
        for slot in self._slots.values():
            for server in slot.servers:
                if server.revision:
                    entries[server.name + "!"] = server.revision
                    self._revision_of[server.name] = server.revision
        if entries != self._entries:
            await self._commit(entries)
        self._route_of = routes_of
        for name, slot in self._slots.items():
            if name in mapped:
                slot.unmapped_at = None
            elif slot.servers and slot.unmapped_at is None:
                slot.unmapped_at = now
        serving = {s.name for n in mapped for s in self._slots[n].servers}
        for slot in self._slots.values():
            for server in slot.servers:
                if server.name not in serving and server.revision:
                    self._unmapped.setdefault(server.name, now)
        for instance in serving:
            self._unmapped.pop(instance, None)

    async def _commit(self, entries: Mapping[str, str]) -> None:
        assert self._dir is not None
        path = self._dir / "routes.map"
        answer = await self._command(f"prepare map {path}", expect="New version created:")
        version = answer.split("New version created:", 1)[1].split()[0]
        if entries:
            await self._command(f"add map @{version} {path}", _map_text(entries))
        await self._command(f"commit map @{version} {path}")
        self._entries = dict(entries)

    async def _grow(self, resolved: Mapping[str, tuple[Route, tuple[Server, ...]]]) -> None:
        """Out of slots: reload with twice as many, holding exactly what is wanted now."""
        while True:
            self._pool *= 2
            wanted = {servers: route.kind for route, servers in resolved.values()}
            per_kind = Counter(wanted.values())
            if all(n <= self._pool for n in per_kind.values()):
                break
        slots, entries = self._layout(resolved)
        await self._reload(slots, entries)
        await self._apply()

    def _layout(
        self, resolved: Mapping[str, tuple[Route, tuple[Server, ...]]]
    ) -> tuple[dict[str, tuple[Server, ...]], dict[str, str]]:
        """Slots and map entries for a fresh configuration holding ``resolved``."""
        slots: dict[str, tuple[Server, ...]] = {}
        names: dict[tuple[Server, ...], str] = {}
        counts = Counter[str]()
        for route, servers in resolved.values():
            if servers not in names:
                names[servers] = f"{route.kind}{counts[route.kind]}"
                counts[route.kind] += 1
                slots[names[servers]] = servers
        entries = {
            key: f"{names[servers]}/{route.service}/{route.tag}"
            for key, (route, servers) in resolved.items()
        }
        for servers in slots.values():
            for server in servers:
                if server.revision:
                    entries[server.name + "!"] = server.revision
        return slots, entries

    async def _ensure_running(self) -> None:
        current = self._current
        if current is not None and current.running:
            return
        if current is not None:
            code = current.popen.returncode if current.popen is not None else None
            log.error("HAProxy exited with code %s; starting it again", code)
        await self._resync()

    async def _resync(self) -> None:
        """Start HAProxy afresh with the current table (after a crash or an error)."""
        assert self._dir is not None
        resolved = await self._resolve(plan_routes(self.python.table, self.domain))
        slots, entries = self._layout(resolved)
        (self._dir / "routes.map").write_text(_map_text(entries))
        current = self._current
        if current is not None and current.running:
            await self._reload(slots, entries)
        else:
            self._current = await self._launch(slots)
            self._entries = entries
        await self._apply()

    # ---- stats: in-flight requests, emptying slots that left the map

    async def _watch_stats(self) -> None:
        while True:
            busy = bool(self._old) or any(s.unmapped_at is not None for s in self._slots.values())
            await asyncio.sleep(STATS_FAST if busy or self._unmapped else STATS_SLOW)
            self._old = [p for p in self._old if p.running]
            current = self._current
            if current is not None and not current.running:
                self._wake.set()  # HAProxy died: the sync starts it again
                continue
            try:
                async with self._lock:
                    await self._read_stats()
                    await self._empty_slots()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # HAProxy restarting: the next round reads again
                log.debug("HAProxy stats: %s", exc)

    async def _read_stats(self) -> None:
        taken = self.clock()
        text = await self._cli("show stat -1 4 -1")
        rows = csv.reader(io.StringIO(text.lstrip("# ")))
        header = next(rows, [])
        try:
            px, sv, cur = header.index("pxname"), header.index("svname"), header.index("scur")
        except ValueError:
            return
        stats = {}
        for row in rows:
            if len(row) > cur and row[cur].isdigit():
                stats[(row[px], row[sv])] = int(row[cur])
        self._stats, self._stats_at = stats, taken
        for stat in self.metrics.stats.values():
            stat.outside = 0
        for (slot, server), count in stats.items():
            revision = self._revision_of.get(server)
            route = self._route_of.get(slot)
            if count and revision and route:
                self.metrics.get(route[0], revision, route[1]).outside += count
        for instance, removed in list(self._unmapped.items()):
            gone = not any(
                s.name == instance for slot in self._slots.values() for s in slot.servers
            )
            if gone and taken > removed:
                del self._unmapped[instance]

    async def _empty_slots(self) -> None:
        """Delete the servers of slots that left the map once they serve nothing."""
        changed = False
        for name, slot in self._slots.items():
            if slot.unmapped_at is None or not slot.servers:
                continue
            if self._stats_at < slot.unmapped_at + SLOT_GRACE:
                continue
            if any(self._stats.get((name, s.name), 0) for s in slot.servers):
                continue
            for server in slot.servers:
                if server.name in slot.deleted:
                    continue
                await self._cli(f"set server {name}/{server.name} state maint")
                answer = await self._cli(f"del server {name}/{server.name}")
                if "deleted" in answer or "No such server" in answer:
                    slot.deleted.add(server.name)
            if len(slot.deleted) == len(slot.servers):
                self._by_group.pop(slot.servers, None)
                self._slots[name] = _Slot(name)
                changed = True
        if changed:
            live = {s.name for slot in self._slots.values() for s in slot.servers}
            for gone in [name for name in self._revision_of if name not in live]:
                del self._revision_of[gone]
            used = {
                int(s.name[2:])
                for slot in self._slots.values()
                for s in slot.servers
                if s.name.startswith("_a")
            }
            for key in self.python.activators():
                port = await self.python.activator(key)
                if port not in used:
                    self.python.close_activator(key)
            self._wake.set()  # the map drops the deleted servers' entries

    # ---- the request log

    async def _read_log(self) -> None:
        while True:
            try:
                await self._stream_log()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("HAProxy request log: %s", exc)
            await asyncio.sleep(0.2)

    async def _stream_log(self) -> None:
        assert self._dir is not None
        process = self._current
        reader, writer = await asyncio.open_unix_connection(
            str(self._dir / "admin.sock"), limit=16 * 2**20
        )
        try:
            writer.write(b"show events sos -w -n\n")
            await writer.drain()
            rest = b""
            # until HAProxy is replaced (the old one must not be kept alive by this reader)
            while process is self._current and not self._closing:
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
                self._count(data[:cut])
                # read in batches: the lines wait in the socket meanwhile (one read per
                # 100 ms instead of one per few lines)
                writer.transport.pause_reading()  # type: ignore[attr-defined]
                await asyncio.sleep(LOG_PERIOD)
                writer.transport.resume_reading()  # type: ignore[attr-defined]
        finally:
            writer.close()

    def _count(self, chunk: bytes) -> None:
        """Count a batch of log lines (``route server status Ta termination``)."""
        for line, n in Counter(chunk.split(b"\n")).items():
            parts = line.split(b" ")
            if len(parts) != 5 or parts[0] == b"-":
                continue  # HAProxy's own events, or no route (the Python router counts)
            route, server, status, active, ending = parts
            revision = self._revision_of.get(server.decode())
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


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """HAProxy without a state directory ends with the process that started it
    (PR_SET_PDEATHSIG): nothing could adopt it."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    os.setpgrp()


def _detach() -> None:  # pragma: no cover - runs in the child
    """HAProxy outlives a server that dies (the next one adopts it): its own process
    group (a Ctrl-C of the server's terminal is the server's to handle), and writes to its
    output pipe after the server is gone fail instead of killing it (SIGPIPE ignored)."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    os.setpgrp()


def _down_map() -> str:
    """The map that names the Python router's servers in HAProxy (their refused
    connections mean the server is down) with the start of the 503's text."""
    return "".join(f"{pattern} {DOWN_TEXT}\n" for pattern in ("^python$", "^_a[0-9]+$"))


async def _relay(stream: asyncio.StreamReader) -> list[str]:
    """Log HAProxy's own output (alerts and warnings); the lines, when it ends."""
    lines: list[str] = []
    async for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        lines = [*lines[-20:], line]
        ours = " CLI : " in line or "stopped (cumulated conns" in line  # reloads, API calls
        if ("[ALERT]" in line or "[WARNING]" in line) and not ours:
            log.warning("haproxy: %s", line)
        else:
            log.debug("haproxy: %s", line)
    return lines
