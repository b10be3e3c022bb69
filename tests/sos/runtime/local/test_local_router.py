"""The shared router with real instances behind it: routing, splits, tags, the activator.
Every test runs on both data paths: the Python router alone, and HAProxy in front of it."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sos_runtime import StartApp

from sos.errors import BackendError
from sos.runtime.local.ingress import (
    Endpoint,
    Ingress,
    RevisionTarget,
    RoutingTable,
    ServiceRoute,
    SmoothWeighted,
    create_ingress,
)

StartRouter = Callable[..., Awaitable[Ingress]]


@pytest.fixture(params=["python", "haproxy"])
def start_router(
    request: pytest.FixtureRequest, ingress_factory: Callable[..., Awaitable[Ingress]]
) -> StartRouter:
    """``start(**options)``: a started router of the data path under test."""

    async def start(**options: float) -> Ingress:
        return await ingress_factory(request.param, **options)

    return start


@pytest.fixture
async def router(start_router: StartRouter) -> Ingress:
    return await start_router()


async def route(router: Ingress, routes: RoutingTable) -> None:
    """Swap the table and wait until the data path routes by it."""
    router.update(routes)
    await router.settle()


async def until(
    check: Callable[[], bool | Awaitable[bool]], what: str, seconds: float = 15
) -> None:
    """Wait for what a user would see (metrics come from HAProxy's log every 100 ms)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        done = check()
        if done if isinstance(done, bool) else await done:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def table(
    splits: dict[str, dict[str, int]],
    ports: dict[str, int],
    tags: dict[str, dict[str, str]] | None = None,
    unavailable: dict[str, str] | None = None,
) -> RoutingTable:
    services = [
        ServiceRoute(name, tuple(split.items()), (tags or {}).get(name, {}))
        for name, split in splits.items()
    ]
    revisions = []
    for split in splits.values():
        for revision in split:
            port = ports.get(revision)
            endpoints = (Endpoint(f"{revision}-a", revision, port),) if port else ()
            service = revision.rsplit("-", 1)[0]
            why = (unavailable or {}).get(revision)
            revisions.append(RevisionTarget(revision, service, endpoints, why))
    return RoutingTable(services, revisions)


async def get(router: Ingress, host: str, path: str = "/", **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=15) as client:
        return await client.get(
            f"http://127.0.0.1:{router.port}{path}", headers={"Host": host, **headers}
        )


async def test_host_header_reaches_the_service_and_names_the_revision(
    router: Ingress, start_app: StartApp
) -> None:
    app = start_app("shop-00001")
    await route(router, table({"shop": {"shop-00001": 100}}, {"shop-00001": app.port}))
    response = await get(router, f"shop.localhost:{router.port}", "/items?x=1")
    assert response.status_code == 200
    assert response.headers["sos-revision"] == "shop-00001"
    assert "hello from shop-00001 path=/items?x=1" in response.text
    assert f"host=shop.localhost:{router.port}" in response.text


async def test_path_prefix_form_strips_the_prefix(router: Ingress, start_app: StartApp) -> None:
    app = start_app("shop-00001")
    await route(router, table({"shop": {"shop-00001": 100}}, {"shop-00001": app.port}))
    response = await get(router, "127.0.0.1", "/s/shop/items?x=1")
    assert "path=/items?x=1" in response.text
    assert (await get(router, "127.0.0.1", "/s/shop")).text.split()[3] == "path=/"
    assert (await get(router, "127.0.0.1", "/s/shop?q=2")).text.split()[3] == "path=/?q=2"


async def test_weighted_split_is_exact_even_over_ten_requests(
    router: Ingress, start_app: StartApp
) -> None:
    old, new = start_app("shop-00001"), start_app("shop-00002")
    await route(
        router,
        table(
            {"shop": {"shop-00001": 70, "shop-00002": 30}},
            {"shop-00001": old.port, "shop-00002": new.port},
        ),
    )
    async with httpx.AsyncClient(headers={"Host": "shop.localhost"}) as client:
        for _ in range(3):
            seen = Counter(
                [
                    (await client.get(f"http://127.0.0.1:{router.port}/")).headers["sos-revision"]
                    for _ in range(10)
                ]
            )
            assert seen == {"shop-00001": 7, "shop-00002": 3}


def test_smooth_weighted_round_robin_spreads_picks() -> None:
    balancer = SmoothWeighted([("a", 70), ("b", 30), ("c", 0)])
    picks = [balancer.pick() for _ in range(100)]
    assert Counter(picks) == {"a": 70, "b": 30}
    # spread out, not bunched: never more than three "a" in a row at 70/30
    runs = "".join(str(p) for p in picks).split("b")
    assert max(len(run) for run in runs) <= 3


async def test_tag_host_and_header_reach_the_tagged_revision(
    router: Ingress, start_app: StartApp
) -> None:
    old, new = start_app("shop-00001"), start_app("shop-00002")
    await route(
        router,
        table(
            {"shop": {"shop-00001": 100, "shop-00002": 0}},
            {"shop-00001": old.port, "shop-00002": new.port},
            tags={"shop": {"canary": "shop-00002"}},
        ),
    )
    by_host = await get(router, "canary-shop.localhost")
    assert by_host.headers["sos-revision"] == "shop-00002"
    by_header = await get(router, "shop.localhost", **{"Sos-Tag": "canary"})
    assert by_header.headers["sos-revision"] == "shop-00002"
    by_path = await get(router, "localhost", "/s/canary-shop/")
    assert by_path.headers["sos-revision"] == "shop-00002"
    untagged = [(await get(router, "shop.localhost")).headers["sos-revision"] for _ in range(5)]
    assert set(untagged) == {"shop-00001"}  # a 0% route gets nothing from the split
    unknown = await get(router, "shop.localhost", **{"Sos-Tag": "nope"})
    assert unknown.status_code == 404
    assert "has no tag 'nope'" in unknown.text


async def test_revision_path_reaches_a_revision_without_traffic(
    router: Ingress, start_app: StartApp
) -> None:
    old, new = start_app("shop-00001"), start_app("shop-00002")
    await route(
        router,
        table(
            {"shop": {"shop-00001": 100, "shop-00002": 0}},
            {"shop-00001": old.port, "shop-00002": new.port},
        ),
    )
    response = await get(router, "localhost", "/r/shop-00002/a/b")
    assert response.headers["sos-revision"] == "shop-00002"
    assert "path=/a/b" in response.text
    assert (await get(router, "localhost", "/r/shop-00009/")).status_code == 404


async def test_unknown_service_gets_a_404_that_says_how_to_reach_one(router: Ingress) -> None:
    await route(router, table({"shop": {"shop-00001": 100}}, {}))
    response = await get(router, "nope.localhost")
    assert response.status_code == 404
    assert "no service 'nope'" in response.text and "reach a service at" in response.text
    assert "shop" not in response.text  # names nothing that runs here (other teams' services)
    assert (await get(router, "localhost", "/s/nope/")).status_code == 404


async def test_post_bodies_streams_and_head_pass_through(
    router: Ingress, start_app: StartApp
) -> None:
    app = start_app("shop-00001")
    await route(router, table({"shop": {"shop-00001": 100}}, {"shop-00001": app.port}))
    base = f"http://127.0.0.1:{router.port}"
    async with httpx.AsyncClient(headers={"Host": "shop.localhost"}) as client:
        echoed = await client.post(f"{base}/", content=b"x" * 100_000)
        assert echoed.content == b"echo " + b"x" * 100_000
        streamed = await client.get(f"{base}/stream")
        assert streamed.text == "part 0\npart 1\npart 2\n"
        head = await client.head(f"{base}/")
        assert head.status_code == 200 and head.content == b""
        after = await client.get(f"{base}/")  # the connection is still in step after HEAD
        assert after.text.startswith("hello from shop-00001")


async def test_traffic_change_is_atomic_and_in_flight_requests_finish(
    router: Ingress, start_app: StartApp
) -> None:
    old, new = start_app("shop-00001"), start_app("shop-00002")
    ports = {"shop-00001": old.port, "shop-00002": new.port}
    await route(router, table({"shop": {"shop-00001": 100}}, ports))
    url = f"http://127.0.0.1:{router.port}/slow?ms=1500"
    async with httpx.AsyncClient(headers={"Host": "shop.localhost"}, timeout=30) as client:
        before = [asyncio.create_task(client.get(url)) for _ in range(20)]
        await until(
            lambda: router.in_flight("shop-00001-a") >= 20,
            "all 20 requests to be in flight on the old revision",
        )
        await route(router, table({"shop": {"shop-00002": 100}}, ports))
        after = [asyncio.create_task(client.get(url)) for _ in range(20)]
        done_before = await asyncio.gather(*before)
        done_after = await asyncio.gather(*after)
    assert {r.status_code for r in done_before + done_after} == {200}
    assert {r.headers["sos-revision"] for r in done_before} == {"shop-00001"}
    assert {r.headers["sos-revision"] for r in done_after} == {"shop-00002"}


async def test_traffic_shifts_under_load_fail_no_request(
    router: Ingress, start_app: StartApp
) -> None:
    old, new = start_app("shop-00001"), start_app("shop-00002")
    ports = {"shop-00001": old.port, "shop-00002": new.port}
    await route(router, table({"shop": {"shop-00001": 100}}, ports))
    stop = asyncio.Event()
    answers: Counter[str] = Counter()

    async def load() -> None:
        async with httpx.AsyncClient(headers={"Host": "shop.localhost"}, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = await client.get(f"http://127.0.0.1:{router.port}/slow?ms=20")
                    answers[f"{response.status_code} {response.headers.get('sos-revision')}"] += 1
                except httpx.TransportError as exc:
                    answers[type(exc).__name__] += 1

    clients = [asyncio.ensure_future(load()) for _ in range(4)]
    splits = [{"shop-00001": 50, "shop-00002": 50}, {"shop-00002": 100}, {"shop-00001": 100}]
    for i in range(9):
        await route(router, table({"shop": splits[i % 3]}, ports))
        wanted = sum(answers.values()) + 8
        await until(lambda w=wanted: sum(answers.values()) >= w, "requests after the shift")
    stop.set()
    await asyncio.gather(*clients)
    assert set(answers) == {"200 shop-00001", "200 shop-00002"}, answers


async def test_activator_holds_requests_until_an_instance_is_ready(
    router: Ingress, start_app: StartApp
) -> None:
    cold: list[str] = []
    router.on_cold = cold.append
    await route(router, table({"shop": {"shop-00001": 100}}, {}))
    waiting = asyncio.create_task(get(router, "shop.localhost"))
    await until(lambda: cold == ["shop-00001"], "the activator to ask for an instance")
    assert not waiting.done()
    assert router.meters["shop-00001"].in_flight == 1  # held requests count as load
    app = start_app("shop-00001")
    await route(router, table({"shop": {"shop-00001": 100}}, {"shop-00001": app.port}))
    response = await waiting
    assert response.status_code == 200
    assert response.headers["sos-revision"] == "shop-00001"


async def test_activator_gives_up_with_a_clear_503(router: Ingress) -> None:
    router.activation_timeout = 0.3
    await route(router, table({"shop": {"shop-00001": 100}}, {}))
    response = await get(router, "shop.localhost")
    assert response.status_code == 503
    assert "no ready instance after waiting 0.3s" in response.text
    assert "sos logs shop --revision shop-00001" in response.text


async def test_failed_revision_answers_503_with_its_reason_at_once(router: Ingress) -> None:
    why = (
        "the instance exited with code 2 before ready, 5 starts in a row; last log lines:\n"
        "[INFO] Listening at: http://127.0.0.1:41234 (pid 4711)\n"
        "FileNotFoundError: /home/ana/data/ratings.csv"
    )
    await route(router, table({"shop": {"shop-00001": 100}}, {}, unavailable={"shop-00001": why}))
    response = await get(router, "shop.localhost")
    assert response.status_code == 503
    assert response.text == (
        "service 'shop' is unavailable: its revision shop-00001 failed (the instance exited "
        "with code 2 before ready, 5 starts in a row); its owners can run "
        "`sos logs shop --revision 1`\n"
    )


async def test_dead_instance_gives_an_answer_not_a_hang(
    start_router: StartRouter, start_app: StartApp
) -> None:
    """An instance that died without a replacement: the Python router holds the request in
    the activator for the revision's budget, then answers 503 naming the instance; HAProxy
    answers 502 after its retries."""
    router = await start_router(activation_timeout=1)
    app = start_app("shop-00001")
    await route(router, table({"shop": {"shop-00001": 100}}, {"shop-00001": app.port}))
    assert (await get(router, "shop.localhost")).status_code == 200
    app.stop()
    response = await get(router, "shop.localhost")
    if router.data_path == "haproxy":
        assert response.status_code == 502
    else:
        assert response.status_code == 503
        assert "shop-00001-a refused the connection" in response.text
    assert "shop-00001-a" in response.text


async def test_metrics_count_requests_per_revision_and_tag(
    router: Ingress, start_app: StartApp
) -> None:
    app = start_app("shop-00001")
    await route(
        router,
        table(
            {"shop": {"shop-00001": 100}},
            {"shop-00001": app.port},
            tags={"shop": {"stable": "shop-00001"}},
        ),
    )
    for _ in range(3):
        await get(router, "shop.localhost")
    await get(router, "stable-shop.localhost")
    split = 'sos_requests_total{code="2xx",revision="shop-00001",service="shop",tag=""} 3.0'

    async def counted() -> bool:
        text = (await get(router, "localhost", "/metrics")).text
        return split in text and 'tag="stable"} 1.0' in text

    await until(counted, "the requests to show in /metrics")
    text = (await get(router, "localhost", "/metrics")).text
    assert (
        'sos_requests_total{code="2xx",revision="shop-00001",service="shop",tag="stable"} 1.0'
        in text
    )
    assert (
        'sos_request_duration_seconds_count{revision="shop-00001",service="shop",tag=""} 3.0'
        in text
    )
    assert 'sos_requests_in_flight{revision="shop-00001",service="shop",tag=""} 0.0' in text


async def test_service_without_traffic_says_so(router: Ingress) -> None:
    await route(router, RoutingTable([ServiceRoute("shop", ())]))
    response = await get(router, "shop.localhost")
    assert response.status_code == 503
    assert "has no traffic route yet: create a revision" in response.text


async def test_an_instance_that_does_not_answer_gets_a_504(
    start_router: StartRouter, start_app: StartApp
) -> None:
    router = await start_router(request_timeout=0.3)
    app = start_app("shop-00001")
    await route(router, table({"shop": {"shop-00001": 100}}, {"shop-00001": app.port}))
    response = await get(router, "shop.localhost", "/slow?ms=3000")
    assert response.status_code == 504
    assert "did not answer within 0.3s" in response.text
    assert (await get(router, "shop.localhost")).status_code == 200  # nothing stuck


async def test_a_client_that_goes_away_frees_the_instance(
    router: Ingress, start_app: StartApp
) -> None:
    app = start_app("shop-00001")
    await route(router, table({"shop": {"shop-00001": 100}}, {"shop-00001": app.port}))
    async with httpx.AsyncClient(headers={"Host": "shop.localhost"}, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"http://127.0.0.1:{router.port}/slow?ms=2000")

    async def freed() -> bool:
        text = (await get(router, "localhost", "/metrics")).text
        idle = 'sos_requests_in_flight{revision="shop-00001",service="shop",tag=""} 0.0'
        return (
            idle in text and 'errors_total{revision="shop-00001",service="shop",tag=""} 1.0' in text
        )

    await until(freed, "the request to end as an error, well before the instance answers")
    # taken out of the table, the instance has nothing in flight: a drain does not wait
    await route(router, table({"shop": {"shop-00001": 100}}, {}))
    await until(lambda: router.in_flight("shop-00001-a") == 0, "the instance to be idle")


async def test_an_instance_left_out_is_busy_until_its_requests_finish(
    router: Ingress, start_app: StartApp
) -> None:
    app = start_app("shop-00001")
    await route(router, table({"shop": {"shop-00001": 100}}, {"shop-00001": app.port}))
    slow = asyncio.ensure_future(get(router, "shop.localhost", "/slow?ms=1500"))
    await until(lambda: router.in_flight("shop-00001-a") > 0, "the request to start")
    await route(router, table({"shop": {"shop-00001": 100}}, {}))  # draining: out of the table
    assert router.in_flight("shop-00001-a") > 0  # stopping it now would fail the request
    assert (await slow).status_code == 200
    await until(lambda: router.in_flight("shop-00001-a") == 0, "the instance to be idle")


@pytest.mark.parametrize("data_path", ["python", "haproxy"])
def test_a_router_port_in_use_is_a_clear_error(data_path: str) -> None:
    if data_path == "haproxy" and shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (scripts/setup installs it)")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        router = create_ingress(data_path, port=taken.getsockname()[1])
        with pytest.raises(BackendError, match=r"the port is in use .* --router-port"):
            router.bind()


async def _raw(port: int, data: bytes, read_timeout: float = 30.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), read_timeout)
    except (ConnectionError, OSError):
        return b""
    finally:
        writer.close()


async def test_huge_headers_are_refused_and_not_buffered(router: Ingress) -> None:
    """4 connections x 128 MiB of headers once grew the server (also the control plane) by
    500 MiB. A head above the limit is answered 431 (HAProxy: 400) and the connection ends."""
    await route(router, table({"shop": {"shop-00001": 100}}, {}))
    huge = b"GET / HTTP/1.1\r\nHost: shop.localhost\r\nX-Big: " + b"a" * (2 * 2**20) + b"\r\n\r\n"
    answer = await _raw(router.port, huge)
    if router.data_path == "haproxy":  # its buffer is 16 KiB: "400 Bad request"
        assert answer.startswith(b"HTTP/1.1 400") or answer == b""
    else:
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    ok = await _raw(router.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200")  # and it still serves


async def test_a_request_whose_headers_never_finish_is_cut_off(start_router: StartRouter) -> None:
    router = await start_router()
    if router.data_path == "haproxy":
        pytest.skip("HAProxy's own `timeout http-request 10s` does this (in its config)")
    import sos.runtime.local.ingress.python.proxy as router_module

    await route(router, table({"shop": {"shop-00001": 100}}, {}))
    old = router_module.HEADER_TIMEOUT
    router_module.HEADER_TIMEOUT = 0.5
    try:
        answer = await _raw(router.port, b"GET / HTTP/1.1\r\nHost: shop.loc", read_timeout=10)
    finally:
        router_module.HEADER_TIMEOUT = old
    assert answer.startswith(b"HTTP/1.1 408")


async def test_a_killed_instance_is_retried_elsewhere_or_held_not_failed(
    start_router: StartRouter, start_app: StartApp
) -> None:
    """The Python router sent new requests to a killed instance's port (8 failures where
    HAProxy had 0). Nothing was sent on a refused connection, so the request goes to another
    ready instance, or waits in the activator for the replacement."""
    router = await start_router()
    if router.data_path == "haproxy":
        pytest.skip("HAProxy retries refused connections itself (retry-on conn-failure)")
    app = start_app("shop-00001")
    with socket.socket() as sock:  # a port nothing listens on: the killed instance's
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    service = ServiceRoute("shop", (("shop-00001", 100),), {})

    def only(*endpoints: Endpoint) -> RoutingTable:
        return RoutingTable([service], [RevisionTarget("shop-00001", "shop", endpoints)])

    live = Endpoint("shop-00001-live", "shop-00001", app.port)
    gone = Endpoint("shop-00001-gone", "shop-00001", dead)
    await route(router, only(gone, live))
    answers = [await get(router, "shop.localhost") for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 6  # the dead one is skipped

    await route(router, only(gone))  # the replacement is not ready yet
    pending = asyncio.ensure_future(get(router, "shop.localhost"))
    await asyncio.sleep(0.5)
    assert not pending.done()  # held, not failed
    await route(router, only(live))  # the replacement is ready
    answer = await pending
    assert answer.status_code == 200 and answer.headers["sos-revision"] == "shop-00001"


async def test_the_routers_metrics_need_the_token_the_server_was_given() -> None:
    router = create_ingress("python", port=0)
    await router.start()
    try:
        router.metrics_token = ""  # the server's default: off
        off = await get(router, "localhost", "/metrics")
        assert off.status_code == 404 and "SOS_ROUTER_METRICS_TOKEN" in off.text
        router.metrics_token = "s3cret-scrape"
        assert (await get(router, "localhost", "/metrics")).status_code == 401
        async with httpx.AsyncClient(timeout=10) as http:
            good = await http.get(
                f"http://127.0.0.1:{router.port}/metrics",
                headers={"Host": "localhost", "Authorization": "Bearer s3cret-scrape"},
            )
            wrong = await http.get(
                f"http://127.0.0.1:{router.port}/metrics",
                headers={"Host": "localhost", "Authorization": "Bearer S3CRET-SCRAPE"},
            )
        assert good.status_code == 200 and "# HELP" in good.text
        assert wrong.status_code == 401  # tokens are case-sensitive
    finally:
        await router.close()
