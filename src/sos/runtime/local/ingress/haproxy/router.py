"""``HAProxyRouter``: the ingress with HAProxy as its data path, programmed at runtime;
the Python router behind it.

It offers the ``Ingress`` interface with HAProxy (Debian's 2.6, one thread) on the router
port. HAProxy does what every request needs: Host, path-prefix and tag routing
(``Sos-Tag`` too), the weighted split (smooth weighted round-robin across the revisions'
ready instances), ``Sos-Revision`` on responses, retries of idempotent requests, and a
request log for the metrics. The Python ``Router`` stays behind it, on 127.0.0.1, for
everything else:

- the activator: a revision without a ready instance (scaled to zero, starting, failed) is
  an *activator listener* of the Python router in HAProxy's tables (one port per service,
  revision and tag); it holds the request, asks for an instance, and passes the request on
  when one is ready, or answers 503 with the reason;
- unknown hosts, ``/metrics``, ``/healthz`` and anything HAProxy has no route for (HAProxy's
  default backend), with the Python router's own answers;
- services with shadow revisions: HAProxy has no route for their split, so the Python
  router splits (sticky or not, by the same rule) and mirrors their requests; their tags
  and ``/r/`` URLs stay in HAProxy.

A sticky split is HAProxy's own: the key's fetch is in the configuration (a new key name,
rare, reloads HAProxy through the seamless handover), the ranges are map entries changed
at runtime with the split (``plan.py``).

The parts, each a module of this package: ``plan.py`` (a table as groups of servers,
pure), ``config.py`` (HAProxy's configuration and map, pure), ``slots.py`` (the runtime-API
state machine: slots filled and the map swapped at once), ``api.py`` (the runtime API's
commands), ``process.py`` (starting, stopping and adopting HAProxy), ``stats.py`` (the
request log and in-flight counts as metrics). This module runs them: a sync task applies
each new table, a stats task reads in-flight counts and empties slots, a log task counts
requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from sos.models import ShadowComparison
from sos.runtime.local.ingress.haproxy import process
from sos.runtime.local.ingress.haproxy.api import HAProxyError, RuntimeAPI
from sos.runtime.local.ingress.haproxy.config import (
    Server,
    address,
    down_map,
    map_text,
    render_config,
)
from sos.runtime.local.ingress.haproxy.plan import (
    Route,
    plan_routes,
    sticky_entries,
    sticky_sources,
)
from sos.runtime.local.ingress.haproxy.process import STATE_FILE, HAProxyProcess
from sos.runtime.local.ingress.haproxy.slots import Resolved, Slots, layout
from sos.runtime.local.ingress.haproxy.stats import Traffic, stream_log
from sos.runtime.local.ingress.listen import listen_socket
from sos.runtime.local.ingress.python import Router
from sos.runtime.local.ingress.table import RoutingTable
from sos.runtime.local.metrics import ConcurrencyMeter, MetricsCollector

__all__ = ["INITIAL_SLOTS", "HAProxyRouter"]

log = logging.getLogger(__name__)

#: slots of each kind in a fresh configuration (doubled by a reload when they run out)
INITIAL_SLOTS = 32
#: how often the stats are read while something drains / otherwise
STATS_FAST = 0.1
STATS_SLOW = 0.5
#: how long ``settle`` waits for HAProxy to have a table
SETTLE_TIMEOUT = 30.0
#: a restarted server replaces the HAProxy it adopts once its table covers what that one
#: routes, or after this long (instances re-adopted, services applied again)
HANDOVER_TIMEOUT = 20.0
HANDOVER_POLL = 0.25


class HAProxyRouter:
    """The ingress with HAProxy as its data path (an ``Ingress``)."""

    data_path = "haproxy"

    def __init__(
        self,
        python: Router | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        haproxy: str | None = None,
        threads: int = 1,
        slots: int = INITIAL_SLOTS,
        state_dir: Path | None = None,
        keep_on_close: bool = False,
    ) -> None:
        """``python``: the Python router behind HAProxy, listening on 127.0.0.1 (any
        port), with the ingress's settings: domain, timeouts, ``on_cold`` and clock."""
        found = haproxy or shutil.which("haproxy")
        if found is None:
            raise HAProxyError(
                "the haproxy router needs HAProxy: install it (apt-get install haproxy; "
                "scripts/setup does) or choose the Python router (--router python)"
            )
        self.haproxy = found
        self.python = python if python is not None else Router()
        self.host = host
        self.port = port
        self.domain = self.python.domain
        self.request_timeout = self.python.request_timeout
        self.clock = self.python.clock
        self.threads = threads
        #: where the pid file goes (None: HAProxy dies with this process, nothing to adopt)
        self.state_dir = state_dir
        #: a clean ``close`` leaves HAProxy serving for the next server to adopt
        self.keep_on_close = keep_on_close
        #: the HAProxy a previous server left serving, until a new one replaces it
        self._adopted: HAProxyProcess | None = None
        self._adopted_dir: Path | None = None
        #: what the adopted one routes: map keys, and revisions with instances in its map
        self._cover: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        self._handover_at = 0.0
        self._socket: socket.socket | None = None
        self._dir: Path | None = None
        self._current: HAProxyProcess | None = None
        self._old: list[HAProxyProcess] = []
        self._slots = Slots(slots)
        self._traffic = Traffic(self.python.metrics)
        self._version = 0
        self._applied = 0
        self._settled = asyncio.Condition()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._relays: set[asyncio.Task[list[str]]] = set()
        self._closing = False
        #: the sticky keys (source, name) the configuration reads, in its order
        self._sticky: list[tuple[str, str]] = []

    # ---- the Python router's part of the interface (the activator, own endpoints)

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
    def metrics_token(self) -> str | None:
        return self.python.metrics_token

    @metrics_token.setter
    def metrics_token(self, value: str | None) -> None:
        self.python.metrics_token = value

    @property
    def table(self) -> RoutingTable:
        return self.python.table

    @property
    def metrics(self) -> MetricsCollector:
        return self.python.metrics

    @property
    def meters(self) -> dict[str, ConcurrencyMeter]:
        return self.python.meters

    def service_url(self, service: str) -> str:
        return self.python.service_url(service)

    def tag_url(self, service: str, tag: str) -> str:
        return self.python.tag_url(service, tag)

    def revision_url(self, revision: str) -> str:
        return self.python.revision_url(revision)

    def shadow_report(self, service: str) -> list[ShadowComparison]:
        """The Python router mirrors (HAProxy sends it the services with shadows)."""
        return self.python.shadow_report(service)

    # ---- lifecycle

    @property
    def _api(self) -> RuntimeAPI:
        assert self._dir is not None
        return RuntimeAPI(self._dir / "admin.sock")

    def bind(self) -> None:
        """Take the router's port now: a port in use is a clear error at start-up. The
        HAProxy a previous server of the same state directory left serving is adopted:
        its listening socket is taken over (it keeps serving until ``start``'s HAProxy
        replaces it)."""
        if self._socket is not None:
            return
        found = process.adoptable(self.state_dir) if self.state_dir is not None else None
        if found is not None:
            pid, folder, fd = found
            try:
                taken = process.take_listener(pid, fd, self.host, self.port)
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
                self._old.append(HAProxyProcess(pid))
                self._socket = process.rebind_after(pid, self.host, self.port)
                self.port = self._socket.getsockname()[1]
                return
            self._adopted, self._adopted_dir = HAProxyProcess(pid), folder
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
            (self._dir / "down.map").write_text(down_map())
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="sos-haproxy-"))
            (self._dir / "routes.map").write_text("")
            (self._dir / "down.map").write_text(down_map())
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

    async def close(self, *, keep_serving: bool | None = None) -> None:
        """Stop HAProxy (every process of ours), or with ``keep_serving`` (by default
        ``keep_on_close``) leave it serving for the next server of this state directory
        to adopt (only with a state directory)."""
        self._closing = True
        for task in [*self._tasks, *self._relays]:
            task.cancel()
        for task in [*self._tasks, *self._relays]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        wanted = self.keep_on_close if keep_serving is None else keep_serving
        keep = wanted and self.state_dir is not None
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

    async def _inspect_adopted(self, adopted: HAProxyProcess) -> None:
        """Read what the adopted HAProxy routes (map keys, and the revisions of instances
        in mapped slots): it is replaced once the new table routes them all."""
        assert self._dir is not None
        entries = await self._api.map_entries(self._dir / "routes.map")
        mapped = {value.split("/")[0] for key, value in entries.items() if not key.endswith("!")}
        instances, needed = set(), set()
        for slot, server in await self._api.servers():
            revision = entries.get(server + "!")
            if revision is not None:
                instances.add(server)
                if slot in mapped:
                    needed.add(revision)
        adopted.instances = frozenset(instances)
        keys = frozenset(key for key in entries if not key.endswith("!"))
        self._cover = (keys, frozenset(needed))

    def _covered(self) -> bool:
        """Whether the table routes all the adopted HAProxy routes, to ready instances."""
        keys, revisions = self._cover
        table = self.python.table
        planned = {route.key for route in plan_routes(table, self.domain)}
        planned |= set(sticky_entries(table, sorted(sticky_sources(table))))
        ready = {rid for rid, target in table.revisions.items() if target.endpoints}
        return keys <= planned and revisions <= ready

    def _write_state(self, pid: int) -> None:
        if self.state_dir is None or self._dir is None:
            return
        assert self._socket is not None
        record: dict[str, object] = {
            "pid": pid,
            "dir": str(self._dir),
            "fd": self._socket.fileno(),
            "host": self.host,
            "port": self.port,
        }
        process.write_state(self.state_dir, record)

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
        outside = self._traffic.outside(instance)
        if any(instance in proc.instances for proc in self._old):
            return count + max(1, outside)
        if self._slots.routes_to(instance):
            return count + max(1, outside)
        removed = self._slots.unmapped.get(instance)
        if removed is not None and self._traffic.read_at <= removed:
            return count + max(1, outside)
        return count + outside

    def concurrency(self, revision: str, now: float) -> float:
        """Average requests in flight at ``revision`` since the previous call: the held
        ones (Python), plus HAProxy's (``Traffic.concurrency``)."""
        held = self.python.concurrency(revision, now)
        return held + self._traffic.concurrency(revision, now, self._slots.revision_of)

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
            sticky=self._sticky,
        )
        path = self._dir / "haproxy.cfg"
        path.write_text(text)
        return path

    async def _launch(
        self, slots: Mapping[str, Sequence[Server]], *, replace: int = 0
    ) -> HAProxyProcess:
        """Start HAProxy with ``slots`` (at least the pool size of each kind); with
        ``replace``, or a HAProxy adopted from a previous server, the new process takes
        over from that pid (a seamless reload: ``-sf``, the old one finishes its requests
        and exits)."""
        assert self._socket is not None and self._dir is not None
        full = self._slots.padded(slots)
        fd = self._socket.fileno()
        config = self._config(full, fd)
        adopted = self._adopted if self._adopted is not None and self._adopted.running else None
        started = await process.spawn(
            self.haproxy,
            config,
            fd,
            self._api,
            replace=replace or (adopted.pid if adopted else 0),
            detached=self.state_dir is not None,
            relays=self._relays,
            clock=self.clock,
        )
        self._slots.reset(full)
        if self._adopted is not None:
            log.info(
                "HAProxy (pid %d) took over from pid %d, which finishes its requests and exits",
                started.pid,
                self._adopted.pid,
            )
            self._old.append(self._adopted)
            self._adopted = None
        self._write_state(started.pid)
        return started

    async def _reload(
        self, slots: Mapping[str, Sequence[Server]], entries: Mapping[str, str]
    ) -> None:
        """A new HAProxy with these slots and map; the old one finishes its requests."""
        assert self._dir is not None and self._current is not None
        (self._dir / "routes.map").write_text(map_text(entries))
        old = self._current
        old.instances = self._slots.servers()
        self._current = await self._launch(slots, replace=old.pid)
        self._slots.entries = dict(entries)
        self._old.append(old)
        log.info("HAProxy reloaded with %d slots of each kind", self._slots.pool)

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
                    servers.append(
                        Server(up.name, address(up.host, up.port), up.weight, up.revision)
                    )
            resolved[route.key] = (route, tuple(sorted(servers)))
        return resolved

    async def _apply(self) -> None:
        assert self._dir is not None
        table = self.python.table
        resolved = await self._resolve(plan_routes(table, self.domain))
        wanted = sticky_sources(table)
        if not wanted <= set(self._sticky):
            # a sticky key HAProxy does not read yet: its fetch is configuration
            self._sticky += sorted(wanted - set(self._sticky))  # the indexes in use stay
            slots, entries = layout(resolved, sticky_entries(table, self._sticky))
            await self._reload(slots, entries)
        extra = sticky_entries(table, self._sticky)
        if not await self._slots.apply(
            resolved, self._api, self._dir / "routes.map", self.clock, extra
        ):
            await self._grow(resolved)

    async def _grow(self, resolved: Resolved) -> None:
        """Out of slots: reload with twice as many, holding exactly what is wanted now."""
        self._slots.grow(resolved)
        slots, entries = layout(resolved, sticky_entries(self.python.table, self._sticky))
        await self._reload(slots, entries)
        await self._apply()

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
        table = self.python.table
        resolved = await self._resolve(plan_routes(table, self.domain))
        self._sticky += sorted(sticky_sources(table) - set(self._sticky))
        slots, entries = layout(resolved, sticky_entries(table, self._sticky))
        (self._dir / "routes.map").write_text(map_text(entries))
        current = self._current
        if current is not None and current.running:
            await self._reload(slots, entries)
        else:
            self._current = await self._launch(slots)
            self._slots.entries = entries
        await self._apply()

    # ---- stats: in-flight requests, emptying slots that left the map

    async def _watch_stats(self) -> None:
        while True:
            busy = bool(self._old) or self._slots.draining()
            await asyncio.sleep(STATS_FAST if busy or self._slots.unmapped else STATS_SLOW)
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
        stats = await self._api.in_flight()
        if stats is None:
            return
        self._traffic.record(stats, taken, self._slots.revision_of, self._slots.route_of)
        self._slots.forget_unmapped(taken)

    async def _empty_slots(self) -> None:
        """Delete the servers of slots that left the map once they serve nothing, and
        close the activators no slot holds any more."""
        traffic = self._traffic
        if not await self._slots.empty(self._api, traffic.in_flight, traffic.read_at):
            return
        used = self._slots.activator_ports()
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
        """Count the log of the HAProxy that serves now, until it is replaced."""
        current = self._current
        await stream_log(
            self._api,
            lambda chunk: self._traffic.count(chunk, self._slots.revision_of),
            lambda: current is not self._current or self._closing,
        )
