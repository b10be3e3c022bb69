"""The HAProxy data path: weights and routes computed from a routing table (tables of
given/want), its configuration checked by HAProxy itself, and a real HAProxy in front of
real instances: reloads when its slots run out, a restart after a crash, the request log as
metrics and as the autoscaler's input. (Routing, splits, tags, the activator, atomic
changes and errors are in test_local_router.py, run on both data paths.)"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sos_runtime import StartApp

from sos.runtime.local.ingress import Endpoint, RevisionTarget, RoutingTable, ServiceRoute
from sos.runtime.local.ingress.haproxy import HAProxyRouter
from sos.runtime.local.ingress.haproxy.config import Server, render_config
from sos.runtime.local.ingress.haproxy.plan import MAX_WEIGHT, Upstream, plan_routes, split_weights
from sos.runtime.local.ingress.listen import listen_socket
from sos.runtime.local.ingress.python import Router

needs_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="HAProxy is not installed (scripts/setup installs it)"
)


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize(
    ("parts", "want"),
    [
        ([(100, 1)], [[1]]),
        ([(70, 1), (30, 1)], [[7], [3]]),
        ([(70, 2), (30, 1)], [[7, 7], [6]]),  # 35 + 35 : 30
        ([(50, 3), (50, 0)], [[17, 17, 16], [50]]),  # no instance: one weight, the activator
        ([(90, 1), (10, 4)], [[90], [3, 3, 2, 2]]),
        ([(99, 1), (1, 2)], [[198], [1, 1]]),  # 1% over 2 instances: every weight doubled
    ],
)
def test_split_weights_give_each_revision_exactly_its_percent(
    parts: list[tuple[int, int]], want: list[list[int]]
) -> None:
    assert split_weights(parts) == want


def test_split_weights_stay_exact_within_haproxys_weight_limit() -> None:
    # 1% spread over 10 instances beside 99% on one: 99 x 10 would pass HAProxy's 256
    weights = split_weights([(1, 10), (99, 1)])
    assert all(1 <= w <= MAX_WEIGHT for ws in weights for w in ws)
    one, rest = sum(weights[0]), sum(weights[1])
    assert one * 99 == rest * 1  # the share is exact; only some of the 10 instances serve it


# --------------------------------------------------------------------------- routes


def _table() -> RoutingTable:
    two = (
        Endpoint("shop-00001-a", "shop-00001", 9001),
        Endpoint("shop-00001-b", "shop-00001", 9002),
    )
    return RoutingTable(
        [
            ServiceRoute(
                "shop", (("shop-00001", 70), ("shop-00002", 30)), {"canary": "shop-00002"}
            ),
            ServiceRoute("canary-shop", (("canary-shop-00001", 100),)),
        ],
        [
            RevisionTarget("shop-00001", "shop", two),
            RevisionTarget("shop-00002", "shop"),  # scaled to zero
            RevisionTarget("canary-shop-00001", "canary-shop"),
        ],
    )


def test_routes_cover_hosts_labels_tags_and_revisions() -> None:
    routes = {route.key: route for route in plan_routes(_table(), "localhost")}
    split = routes["shop.localhost"]
    assert routes["shop/"].group == split.group  # the /s/shop/ form: the same split
    assert split.group == (
        Upstream("shop-00001", "shop-00001-a", port=9001, weight=7),
        Upstream("shop-00001", "shop-00001-b", port=9002, weight=7),
        Upstream("shop-00002", "", weight=6, activator=("shop", "shop-00002", "")),
    )
    tagged = routes["shop@canary"]  # the Sos-Tag header
    assert (tagged.tag, tagged.group) == (
        "canary",
        (Upstream("shop-00002", "", activator=("shop", "shop-00002", "canary")),),
    )
    assert routes["shop-00001@"].group == (  # /r/shop-00001/: one revision, least loaded
        Upstream("shop-00001", "shop-00001-a", port=9001),
        Upstream("shop-00001", "shop-00001-b", port=9002),
    )
    # a service's own name wins over another service's tag host, as in the Python router
    assert routes["canary-shop.localhost"].service == "canary-shop"
    assert routes["canary-shop/"].service == "canary-shop"


def test_a_service_without_traffic_has_no_route_of_its_own() -> None:
    table = RoutingTable([ServiceRoute("shop", (("shop-00001", 0),))])
    assert plan_routes(table, "localhost") == []  # the Python router answers "no traffic yet"


@needs_haproxy
def test_configuration_is_valid_for_haproxy(tmp_path: Path) -> None:
    (tmp_path / "routes.map").write_text("shop.localhost r0/shop/\n")
    listening = listen_socket("127.0.0.1", 0)  # HAProxy takes the server's socket
    text = render_config(
        socket_path=tmp_path / "admin.sock",
        down_map=tmp_path / "down.map",
        listen_fd=listening.fileno(),
        python_port=9000,
        map_file=tmp_path / "routes.map",
        request_timeout=300,
        threads=1,
        slots={
            "r0": [Server("shop-00001-a", "127.0.0.1:9001", 7, "shop-00001")],
            "l0": [Server("_a9005", "127.0.0.1:9005", 1)],
        },
    )
    (tmp_path / "haproxy.cfg").write_text(text)
    (tmp_path / "down.map").write_text("^python$ the server is down\n")
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        pass_fds=(listening.fileno(),),
    )
    listening.close()
    assert check.returncode == 0, check.stdout + check.stderr


# --------------------------------------------------------------------------- a real HAProxy


@pytest.fixture
async def small_router() -> AsyncIterator[HAProxyRouter]:
    """An HAProxy router with one slot of each kind, so that tables outgrow it."""
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (scripts/setup installs it)")
    router = HAProxyRouter(Router(activation_timeout=10), port=0, slots=1)
    await router.start()
    yield router
    await router.close()


def _serving(revisions: dict[str, int], split: dict[str, int]) -> RoutingTable:
    targets = [
        RevisionTarget(rev, "shop", (Endpoint(f"{rev}-a", rev, port),))
        for rev, port in revisions.items()
    ]
    return RoutingTable([ServiceRoute("shop", tuple(split.items()))], targets)


async def _until(check: object, what: str, seconds: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_outgrowing_the_slots_reloads_haproxy_without_failing_requests(
    small_router: HAProxyRouter, start_app: StartApp
) -> None:
    one, two = start_app("shop-00001"), start_app("shop-00002")
    ports = {"shop-00001": one.port, "shop-00002": two.port}
    small_router.update(_serving({"shop-00001": one.port}, {"shop-00001": 100}))  # one slot
    await small_router.settle()
    first = small_router._current
    stop = asyncio.Event()
    answers: Counter[str] = Counter()

    async def load() -> None:
        async with httpx.AsyncClient(headers={"Host": "shop.localhost"}, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = await client.get(f"http://127.0.0.1:{small_router.port}/")
                    answers[str(response.status_code)] += 1
                except httpx.TransportError as exc:
                    answers[type(exc).__name__] += 1

    clients = [asyncio.ensure_future(load()) for _ in range(4)]
    await _until(lambda: sum(answers.values()) > 20, "requests to flow")
    for split in ({"shop-00001": 50, "shop-00002": 50}, {"shop-00002": 100}):
        small_router.update(_serving(ports, split))  # each needs more slots than there are
        await small_router.settle()
    before = sum(answers.values())
    await _until(lambda: sum(answers.values()) > before + 20, "requests after the reloads")
    stop.set()
    await asyncio.gather(*clients)
    assert small_router._current is not first  # it did reload
    assert set(answers) == {"200"}, answers  # and no request failed meanwhile
    async with httpx.AsyncClient(headers={"Host": "shop.localhost"}) as client:
        seen = {
            (await client.get(f"http://127.0.0.1:{small_router.port}/")).headers["sos-revision"]
            for _ in range(5)
        }
    assert seen == {"shop-00002"}


async def test_haproxy_that_dies_is_started_again_and_nothing_is_refused(
    small_router: HAProxyRouter, start_app: StartApp
) -> None:
    app = start_app("shop-00001")
    small_router.update(_serving({"shop-00001": app.port}, {"shop-00001": 100}))
    await small_router.settle()
    dead = small_router._current
    assert dead is not None
    os.kill(dead.pid, signal.SIGKILL)
    # the listening socket belongs to the server: a request waits for the new HAProxy
    async with httpx.AsyncClient(headers={"Host": "shop.localhost"}, timeout=30) as client:
        response = await client.get(f"http://127.0.0.1:{small_router.port}/")
    assert response.status_code == 200
    assert response.headers["sos-revision"] == "shop-00001"
    await _until(lambda: small_router._current is not dead, "the router to take the new one")
    small_router.update(_serving({"shop-00001": app.port}, {"shop-00001": 50}))
    await small_router.settle()  # and it programs the new one


async def test_the_request_log_counts_every_request_for_metrics_and_the_autoscaler(
    small_router: HAProxyRouter, start_app: StartApp
) -> None:
    app = start_app("shop-00001")
    small_router.update(_serving({"shop-00001": app.port}, {"shop-00001": 100}))
    await small_router.settle()
    start = small_router.clock()
    small_router.concurrency("shop-00001", start)  # starts a period
    base = f"http://127.0.0.1:{small_router.port}"
    async with httpx.AsyncClient(headers={"Host": "shop.localhost"}, timeout=30) as client:
        for _ in range(15):  # the stdlib test app accepts few connections at once
            await asyncio.gather(*(client.get(f"{base}/") for _ in range(10)))
        slow = [asyncio.ensure_future(client.get(f"{base}/slow?ms=1000")) for _ in range(4)]
        # in flight now, through HAProxy's stats: what a drain and the autoscaler see
        await _until(lambda: small_router.in_flight("shop-00001-a") >= 4, "4 in flight")
        assert small_router.concurrency("shop-00001", small_router.clock()) >= 4
        await asyncio.gather(*slow)
        assert (await client.get(f"{base}/missing-is-fine")).status_code == 200
    stats = small_router.metrics.get("shop", "shop-00001", "")
    await _until(lambda: stats.count == 155, "155 requests in the metrics")
    assert stats.codes[1] == 155 and stats.errors == 0
    assert sum(stats.buckets) == 155
    assert sum(stats.buckets[8:]) >= 4  # the four slow ones, above 1 s (HAProxy's %Ta)
    assert stats.total_seconds >= 4.0


def test_an_unsafe_routing_entry_is_left_out_and_the_others_still_route() -> None:
    from sos.runtime.local.ingress.haproxy.config import map_text as _map_text

    entries = {
        "shop.localhost": "s1/shop/",
        "canary\n-victim.localhost": "s2/victim/canary",  # would split into two entries
        "ads.localhost": "s3/ads/ with space",
    }
    assert _map_text(entries) == "shop.localhost s1/shop/\n"
