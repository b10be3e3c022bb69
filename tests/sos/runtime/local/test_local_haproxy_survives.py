"""HAProxy, the default data path, outlives a `sos server` that dies: it keeps serving the
last routing table while the server is down, and the restarted server adopts it (one
HAProxy afterwards, on the same router port). A clean stop stops it, unless instances are
kept. Real `sos server` processes, real HAProxy, loopback only."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sos_harness import TOKEN, ServerProcess, publish, until

from sos.client import Client
from sos.models import RevisionSpec, ServiceSpec
from sos.runtime.local.ingress.haproxy import HAProxyRouter
from sos.runtime.local.ingress.haproxy import process as haproxy_module
from sos.runtime.local.ingress.haproxy.process import STATE_FILE, adoptable
from sos.runtime.local.ingress.python import Router
from sos.runtime.local.procs import alive

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed"),
]


def haproxies(data: Path) -> list[int]:
    """Live HAProxy processes started for ``data`` (their configuration names the runtime
    directory the data dir's pid file records; zombies do not count)."""
    record = json.loads((data / "runtime" / "router" / STATE_FILE).read_text())
    config = f"{record['dir']}/haproxy.cfg".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if config in argv and alive(int(entry)):
            found.append(int(entry))
    return found


def deploy(server: ServerProcess, hello_pyz: Path) -> None:
    """Service ``shop``: revision 1 with one instance, all traffic."""
    with Client(server.url, TOKEN) as client:
        publish(client, hello_pyz, "hello-py", "python")
        client.apply(ServiceSpec(name="shop", team="recs"))
        one = {"artifact": {"name": "hello-py", "version": "v1"}, "autoscaling": {"min_scale": 1}}
        client.create_revision("shop", RevisionSpec.model_validate(one))
        client.wait_ready("shop", 1, timeout=60)


def get(port: int, host: str = "shop.localhost") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=30)


class Load:
    """Light steady load (one request at a time) on ``shop``: status codes, in order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.codes: list[int | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10, headers={"Host": "shop.localhost"}) as http:
            while not self._stop.is_set():
                try:
                    self.codes.append(http.get(f"http://127.0.0.1:{self.port}/").status_code)
                except httpx.HTTPError as exc:
                    self.codes.append(type(exc).__name__)
                self._stop.wait(0.01)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_killed_server_leaves_haproxy_serving_and_the_next_one_adopts_it(
    tmp_path: Path, hello_pyz: Path, servers: list[ServerProcess]
) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, 0, SOS_ROUTER="haproxy")
    servers.append(server)
    port = server.router_port
    deploy(server, hello_pyz)
    first = haproxies(data)
    assert len(first) == 1

    with Load(port) as load:
        until(lambda: len(load.codes) >= 50, 30, "requests before the kill")
        server.process.kill()  # kill -9: no clean-up at all
        server.process.wait()
        before = len(load.codes)
        until(lambda: len(load.codes) >= before + 150, 60, "requests while the server is down")
        down = load.codes[before:]
        # a request that needs the Python router (no route) says the control plane is down
        lost = get(port, "nothing.localhost")
        assert lost.status_code == 503, lost.text
        assert "sos server (the control plane) is down" in lost.text
        scrape = "metrics-scraper-token"
        again = ServerProcess(data, port, SOS_ROUTER="haproxy", SOS_ROUTER_METRICS_TOKEN=scrape)
        servers.append(again)
        with Client(again.url, TOKEN) as client:
            client.wait_ready("shop", 1, timeout=60)
        after = len(load.codes)
        until(lambda: len(load.codes) >= after + 100, 60, "requests after the restart")
    assert again.router_port == port
    assert Counter(down) == {200: len(down)}, Counter(down)  # served while it was down
    assert Counter(load.codes) == {200: len(load.codes)}, Counter(load.codes)
    # adopted: the old HAProxy finished and exited, one runs, the pid file names it
    until(lambda: len(haproxies(data)) == 1 and haproxies(data) != first, 30, "one HAProxy")
    found = adoptable(data / "runtime" / "router")
    assert found is not None and [found[0]] == haproxies(data)

    # the adopted data path obeys the new server: a traffic change, and metrics
    with Client(again.url, TOKEN) as client:
        one = {"artifact": {"name": "hello-py", "version": "v1"}, "autoscaling": {"min_scale": 1}}
        client.create_revision("shop", RevisionSpec.model_validate(one))
        client.wait_ready("shop", 2, timeout=60)
        client.set_traffic("shop", {2: 100})
        until(lambda: get(port).headers.get("sos-revision") == "shop-00002", 30, "the change")
        served = Counter(get(port).headers["sos-revision"] for _ in range(10))
        assert served == {"shop-00002": 10}
        # counted from the new HAProxy's request log, shown at the router's /metrics
        metrics = f"http://127.0.0.1:{port}/metrics"
        bearer = {"Authorization": f"Bearer {scrape}"}
        until(
            lambda: 'revision="shop-00002"' in httpx.get(metrics, headers=bearer).text,
            10,
            "the count",
        )
        # without the token, the counters of every team stay private
        assert httpx.get(metrics).status_code == 401
    last = haproxies(data)
    again.stop()  # Ctrl-C: HAProxy stops with the instances
    assert not any(alive(pid) for pid in last)
    assert not (data / "runtime" / "router" / STATE_FILE).exists()


def test_clean_stop_with_kept_instances_leaves_haproxy_serving_for_the_next_server(
    tmp_path: Path, hello_pyz: Path, servers: list[ServerProcess]
) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, 0, SOS_ROUTER="haproxy", SOS_KEEP_INSTANCES="1")
    servers.append(server)
    port = server.router_port
    deploy(server, hello_pyz)
    server.stop()  # Ctrl-C with SOS_KEEP_INSTANCES=1
    kept = haproxies(data)
    assert len(kept) == 1
    answer = get(port)
    assert answer.status_code == 200 and answer.headers["sos-revision"] == "shop-00001"
    again = ServerProcess(data, port, SOS_ROUTER="haproxy")
    servers.append(again)
    with Client(again.url, TOKEN) as client:
        client.wait_ready("shop", 1, timeout=60)
    until(lambda: len(haproxies(data)) == 1 and haproxies(data) != kept, 30, "one HAProxy")
    assert get(port).status_code == 200


def test_stale_pid_file_is_ignored_and_another_data_dirs_haproxy_is_not_touched(
    tmp_path: Path, hello_pyz: Path, servers: list[ServerProcess]
) -> None:
    other = ServerProcess(tmp_path / "other", 0, SOS_ROUTER="haproxy")
    servers.append(other)
    theirs = haproxies(tmp_path / "other")
    data = tmp_path / "data"
    state = data / "runtime" / "router"
    state.mkdir(parents=True)
    # a pid file naming the other data dir's HAProxy (with its own directory: not ours)
    record = json.loads((tmp_path / "other" / "runtime" / "router" / STATE_FILE).read_text())
    fake = {
        "pid": theirs[0],
        "dir": str(tmp_path / "gone"),
        "fd": 3,
        "host": "127.0.0.1",
        "port": 1,
    }
    (state / STATE_FILE).write_text(json.dumps(fake))
    assert adoptable(state) is None
    (state / STATE_FILE).write_text(json.dumps({"pid": 2**22 + 7, "dir": record["dir"], "fd": 3}))
    assert adoptable(state) is None  # a pid that is gone
    server = ServerProcess(data, 0, SOS_ROUTER="haproxy")
    servers.append(server)
    assert server.router_port != other.router_port
    assert haproxies(tmp_path / "other") == theirs  # untouched, still serving
    assert httpx.get(f"http://127.0.0.1:{other.router_port}/healthz", timeout=10).status_code == 200
    assert len(haproxies(data)) == 1


async def test_without_the_socket_handover_the_old_haproxy_stops_and_the_port_is_bound_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where taking the old HAProxy's socket is not allowed (ptrace restricted: Yama
    ptrace_scope >= 1 without root), the next server soft-stops it and binds the port
    itself: the same port, one HAProxy, nothing left behind."""
    state = tmp_path / "router"
    first = HAProxyRouter(
        Router(activation_timeout=10), port=0, state_dir=state, keep_on_close=True
    )
    await first.start()
    port = first.port
    await first.close()  # a clean stop that keeps the data path serving
    found = adoptable(state)
    assert found is not None
    old = found[0]
    # the server is gone: what needs it says so, from the HAProxy that stayed (a client of
    # its own: an idle keep-alive connection keeps a soft-stopped HAProxy serving it)
    async with httpx.AsyncClient(timeout=10) as http:
        down = await http.get(f"http://127.0.0.1:{port}/", headers={"Host": "x.localhost"})
        assert down.status_code == 503 and "control plane" in down.text
    async with httpx.AsyncClient(timeout=10) as http:

        def refused(*_: object) -> None:
            raise PermissionError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(haproxy_module, "take_listener", refused)
        second = HAProxyRouter(Router(activation_timeout=10), port=port, state_dir=state)
        await second.start()
        try:
            assert second.port == port
            deadline = asyncio.get_running_loop().time() + 15
            while alive(old):
                assert asyncio.get_running_loop().time() < deadline, "the old HAProxy runs on"
                await asyncio.sleep(0.05)
            health = await http.get(f"http://127.0.0.1:{port}/healthz")
            assert health.status_code == 200, health.text
            now = adoptable(state)
            assert now is not None and now[0] != old
        finally:
            await second.close()
    assert adoptable(state) is None and not alive(now[0])
