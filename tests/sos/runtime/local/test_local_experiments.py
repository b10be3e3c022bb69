"""Sticky A/B splits and shadow traffic on the router's data paths, with real instances.

Sticky: both data paths (the Python router alone, HAProxy in front of it) pick a keyed
request's revision by ``sos.traffic.sticky_revision``: the same revision for every key on
both, the split's shares within a point or two, and a 90/10 -> 80/20 change moving about
10% of the keys. Shadow: the Python router mirrors (HAProxy sends it the services with
shadows); a slow or failing shadow never touches the caller; the report compares answers.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import httpx
import pytest
from sos_runtime import StartApp

from sos import traffic
from sos.runtime.local.ingress import (
    Endpoint,
    Ingress,
    RevisionTarget,
    RoutingTable,
    ServiceRoute,
    ShadowTarget,
    sticky_key,
)

Start = Callable[[str], Awaitable[Ingress]]


def _needs_haproxy() -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (scripts/setup installs it)")


@pytest.fixture
def start(ingress_factory: Callable[..., Awaitable[Ingress]]) -> Start:
    """``start(data_path)``: a started router (closed at the end)."""

    async def go(data_path: str) -> Ingress:
        return await ingress_factory(data_path)

    return go


def table(
    split: dict[str, int],
    ports: dict[str, int],
    *,
    split_by: tuple[str, str] | None = None,
    shadows: Sequence[ShadowTarget] = (),
) -> RoutingTable:
    revisions = {*split, *(s.revision for s in shadows)}
    return RoutingTable(
        [ServiceRoute("shop", tuple(split.items()), {}, split_by, tuple(shadows))],
        [
            RevisionTarget(
                rev, "shop", (Endpoint(f"{rev}-a", rev, ports[rev]),) if rev in ports else ()
            )
            for rev in sorted(revisions)
        ],
    )


async def route(routers: Sequence[Ingress], routes: RoutingTable) -> None:
    for router in routers:
        router.update(routes)
        await router.settle()


def keyed(source: str, name: str, key: str) -> tuple[str, dict[str, str]]:
    """The path and headers of a request carrying ``key``."""
    if source == "header":
        return "/", {name: key}
    if source == "query":
        return f"/?a=1&{name}={key}", {}
    return "/", {"Cookie": f"theme=dark; {name}={key}"}


async def revisions(router: Ingress, source: str, name: str, keys: Sequence[str]) -> dict[str, str]:
    """Key -> the revision that answered (``Sos-Revision``)."""
    found: dict[str, str] = {}
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=15, limits=limits) as client:

        async def one(key: str) -> None:
            path, headers = keyed(source, name, key)
            response = await client.get(
                f"http://127.0.0.1:{router.port}{path}",
                headers={"Host": "shop.localhost", **headers},
            )
            assert response.status_code == 200, response.text
            found[key] = response.headers["sos-revision"]

        for at in range(0, len(keys), 16):
            await asyncio.gather(*(one(key) for key in keys[at : at + 16]))
    return found


def test_sticky_key_reads_what_haproxy_reads() -> None:
    head = [b"X-User-Id", b": ", b"u1", b"\r\n", b"x-user-id", b": ", b"u2", b"\r\n"]
    assert sticky_key("header", "X-User-Id", b"/", head) == "u2"  # the last, as req.fhdr
    assert sticky_key("header", "X-Other", b"/", head) is None
    assert sticky_key("query", "uid", b"/p?x=1&uid=a%20b;uid=c", []) == "a%20b"  # raw, first
    assert sticky_key("query", "uid", b"/p?uidx=1", []) is None
    assert sticky_key("query", "uid", b"/p?uid=", []) is None  # empty: split per request
    cookies = [b"Cookie", b": ", b"a=1; uid=x", b"\r\n", b"Cookie", b": ", b"uid=y", b"\r\n"]
    assert sticky_key("cookie", "uid", b"/", cookies) == "y"  # the last, as req.cook


def test_the_bucket_is_zlib_crc32() -> None:
    """HAProxy's ``crc32`` is the standard CRC-32 (zlib's): the data-path test below
    checks HAProxy's choice against ``sos.traffic``, which hashes with zlib."""
    assert traffic.bucket("user-1") == zlib.crc32(b"user-1") % 10_000
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value


@pytest.mark.parametrize(
    ("source", "name", "count"),
    [("header", "X-User-Id", 1000), ("query", "user_id", 300), ("cookie", "uid", 300)],
)
async def test_both_data_paths_send_every_key_to_the_same_revision(
    start: Start, start_app: StartApp, source: str, name: str, count: int
) -> None:
    _needs_haproxy()
    old, new = start_app("shop-00001"), start_app("shop-00002")
    ports = {"shop-00001": old.port, "shop-00002": new.port}
    routers = [await start("python"), await start("haproxy")]
    split = {"shop-00001": 70, "shop-00002": 30}
    await route(routers, table(split, ports, split_by=(source, name)))
    keys = [f"user-{i}" for i in range(count)]
    python, haproxy = [await revisions(r, source, name, keys) for r in routers]
    ranges = traffic.sticky_ranges(split)
    expected = {key: traffic.sticky_revision(ranges, key) for key in keys}
    assert python == expected
    assert haproxy == expected
    # HAProxy chose by itself (crc32,mod(10000)): nothing went through the Python router
    assert not routers[1].python.connections  # type: ignore[attr-defined]
    share = Counter(python.values())["shop-00001"] / count * 100
    assert abs(share - 70) <= (2 if count >= 1000 else 5), share
    # the access metrics count keyed requests per revision, as any (HAProxy: from its log)
    for router in routers:
        want = [
            f'sos_requests_total{{code="2xx",revision="{rev}",service="shop",tag=""}} {n}.0'
            for rev, n in Counter(python.values()).items()
        ]
        deadline = time.monotonic() + 15
        while True:
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{router.port}/metrics")).text
            if all(line in text for line in want) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert all(line in text for line in want), (router.data_path, want)
    # the same key again: the same revision (sticky), on both paths
    assert await revisions(routers[1], source, name, keys[:20]) == {k: python[k] for k in keys[:20]}


async def test_a_split_change_moves_only_the_keys_between_the_shares(
    start: Start, start_app: StartApp
) -> None:
    _needs_haproxy()
    old, new = start_app("shop-00001"), start_app("shop-00002")
    ports = {"shop-00001": old.port, "shop-00002": new.port}
    routers = [await start("python"), await start("haproxy")]
    keys = [f"k{i}" for i in range(1000)]
    by = ("header", "X-User-Id")
    await route(routers, table({"shop-00001": 90, "shop-00002": 10}, ports, split_by=by))
    before = [await revisions(r, *by, keys) for r in routers]
    await route(routers, table({"shop-00001": 80, "shop-00002": 20}, ports, split_by=by))
    after = [await revisions(r, *by, keys) for r in routers]
    for b, a in zip(before, after, strict=True):
        moved = [k for k in keys if a[k] != b[k]]
        assert 8 <= len(moved) / len(keys) * 100 <= 12, len(moved)
        assert all(b[k] == "shop-00001" and a[k] == "shop-00002" for k in moved)
    assert before[0] == before[1] and after[0] == after[1]


async def test_requests_without_the_key_are_split_per_request(
    start: Start, start_app: StartApp
) -> None:
    _needs_haproxy()
    old, new = start_app("shop-00001"), start_app("shop-00002")
    ports = {"shop-00001": old.port, "shop-00002": new.port}
    for data_path in ("python", "haproxy"):
        router = await start(data_path)
        split = {"shop-00001": 50, "shop-00002": 50}
        await route([router], table(split, ports, split_by=("header", "X-User-Id")))
        async with httpx.AsyncClient(headers={"Host": "shop.localhost"}) as client:
            seen = Counter(
                [
                    (await client.get(f"http://127.0.0.1:{router.port}/")).headers["sos-revision"]
                    for _ in range(10)
                ]
            )
        assert seen == {"shop-00001": 5, "shop-00002": 5}, data_path


# ---------------------------------------------------------------- shadow traffic


async def _recs(router: Ingress, n: int, path: str = "/recs") -> list[tuple[int, float, str]]:
    """(status, seconds, revision) of ``n`` requests one after another."""
    out = []
    async with httpx.AsyncClient(timeout=15, headers={"Host": "shop.localhost"}) as client:
        for _ in range(n):
            began = time.perf_counter()
            response = await client.get(f"http://127.0.0.1:{router.port}{path}")
            out.append(
                (
                    response.status_code,
                    time.perf_counter() - began,
                    response.headers["sos-revision"],
                )
            )
    return out


async def _report_until(router: Ingress, done: Callable[[list[object]], bool]) -> list[object]:
    deadline = time.monotonic() + 20
    while True:
        report: list[object] = list(router.shadow_report("shop"))
        if done(report) or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("data_path", ["python", "haproxy"])
async def test_a_slow_shadow_never_slows_the_caller_and_full_queues_are_counted(
    start: Start, start_app: StartApp, data_path: str
) -> None:
    primary = start_app("shop-00001", HELLO_ITEMS="a,b")
    slow = start_app("shop-00002", HELLO_ITEMS="a,b", HELLO_DELAY_MS="2000")
    router = await start(data_path)
    mirror = (router.python if data_path == "haproxy" else router).mirror  # type: ignore[attr-defined]
    mirror.queue_size, mirror._workers_wanted = 4, 2
    ports = {"shop-00001": primary.port, "shop-00002": slow.port}
    shadow = ShadowTarget("shop-00002", 100)
    await route([router], table({"shop-00001": 100}, ports, shadows=[shadow]))
    answers = await _recs(router, 40)
    assert {status for status, _, _ in answers} == {200}
    assert {rev for _, _, rev in answers} == {"shop-00001"}
    assert max(seconds for _, seconds, _ in answers) < 0.5  # the shadow takes 2 s
    report = router.shadow_report("shop")
    assert len(report) == 1
    pair = report[0]
    assert (pair.primary, pair.shadow) == ("shop-00001", "shop-00002")
    # 2 copies in flight, 4 queued, the rest dropped and counted
    assert pair.dropped >= 40 - 2 - 4 - 2
    assert pair.mirrored + pair.dropped <= 40


@pytest.mark.parametrize("data_path", ["python", "haproxy"])
async def test_a_failing_shadow_shows_only_in_the_report(
    start: Start, start_app: StartApp, data_path: str
) -> None:
    primary = start_app("shop-00001", HELLO_ITEMS="a,b")
    failing = start_app("shop-00002", HELLO_STATUS="500")
    router = await start(data_path)
    ports = {"shop-00001": primary.port, "shop-00002": failing.port}
    await route(
        [router],
        table({"shop-00001": 100}, ports, shadows=[ShadowTarget("shop-00002", 50)]),
    )
    answers = await _recs(router, 20)
    assert {status for status, _, _ in answers} == {200}
    report = await _report_until(router, lambda r: bool(r) and r[0].compared >= 10)  # type: ignore[attr-defined]
    pair = router.shadow_report("shop")[0]
    assert report and pair.mirrored == 10 and pair.compared == 10
    assert pair.shadow_errors == 10 and pair.status_agreement == 0.0


async def test_a_shadow_without_a_ready_instance_gets_no_copy_and_delays_nobody(
    start: Start, start_app: StartApp
) -> None:
    primary = start_app("shop-00001", HELLO_ITEMS="a")
    router = await start("python")
    asked: list[str] = []
    router.on_cold = asked.append
    await route(
        [router],
        table(
            {"shop-00001": 100},
            {"shop-00001": primary.port},
            shadows=[ShadowTarget("shop-00002", 100)],
        ),
    )
    answers = await _recs(router, 5)
    assert {status for status, _, _ in answers} == {200}
    assert max(seconds for _, seconds, _ in answers) < 0.5
    report = await _report_until(router, lambda r: bool(r) and r[0].dropped >= 5)  # type: ignore[attr-defined]
    assert report and router.shadow_report("shop")[0].dropped == 5
    assert "shop-00002" in asked  # its start is asked for, not waited for


async def test_the_report_compares_the_rankings(start: Start, start_app: StartApp) -> None:
    primary = start_app("shop-00001", HELLO_ITEMS="a,b,c,d")
    # the same four items, the first two swapped, and one replaced
    other = start_app("shop-00002", HELLO_ITEMS="b,a,c,x")
    router = await start("python")
    ports = {"shop-00001": primary.port, "shop-00002": other.port}
    await route(
        [router], table({"shop-00001": 100}, ports, shadows=[ShadowTarget("shop-00002", 100)])
    )
    await _recs(router, 10)
    await _report_until(router, lambda r: bool(r) and r[0].compared >= 10)  # type: ignore[attr-defined]
    pair = router.shadow_report("shop")[0]
    assert pair.items_compared == 10 and pair.k == 10
    assert pair.overlap_at_k == pytest.approx(0.3)  # 3 shared items of k=10
    assert pair.top1_agreement == 0.0
    from sos.ranking import rbo

    assert pair.rbo == pytest.approx(round(rbo(list("abcd"), list("bacx")), 4))
    assert pair.status_agreement == 1.0 and pair.shadow_errors == 0
    assert pair.primary_empty_rate == 0.0 and pair.shadow_empty_rate == 0.0


def test_haproxy_plan_maps_every_percentile_and_leaves_mirrored_splits_to_python() -> None:
    from sos.runtime.local.ingress.haproxy.config import render_config
    from sos.runtime.local.ingress.haproxy.plan import plan_routes, sticky_entries, sticky_sources

    ports = {"shop-00001": 1, "shop-00002": 2}
    sticky = table({"shop-00001": 70, "shop-00002": 30}, ports, split_by=("cookie", "uid"))
    keys = {r.key: r for r in plan_routes(sticky, "localhost")}
    percentiles = [keys[f"shop+{p}"].group[0].revision for p in range(100)]
    assert percentiles == ["shop-00001"] * 70 + ["shop-00002"] * 30
    assert "shop.localhost" in keys  # requests without the key: the weighted split
    assert sticky_sources(sticky) == {("cookie", "uid")}
    assert sticky_entries(sticky, [("header", "X"), ("cookie", "uid")]) == {"shop+": "k1"}
    config = render_config(
        socket_path=Path("/s"),
        down_map=Path("/d"),
        listen_fd=3,
        python_port=4,
        map_file=Path("/m"),
        request_timeout=30,
        threads=1,
        slots={},
        sticky=[("header", "X"), ("cookie", "uid")],
    )
    assert "req.cook(uid) if { var(txn.sk) -m str k1 }" in config
    assert "crc32,mod(10000),div(100)" in config
    mirrored = table({"shop-00001": 100}, ports, shadows=[ShadowTarget("shop-00002", 10)])
    keys = {r.key: r for r in plan_routes(mirrored, "localhost")}
    assert "shop.localhost" not in keys and "shop/" not in keys  # the Python router's
    assert "shop-00002@" in keys  # /r/ still HAProxy's


async def test_both_data_paths_read_awkward_keys_alike(start: Start, start_app: StartApp) -> None:
    """Repeated, empty, quoted and ``;``-separated keys: HAProxy's fetches and
    ``sticky_key`` agree (a key read alike lands on one revision; no key: both)."""
    _needs_haproxy()
    old, new = start_app("shop-00001"), start_app("shop-00002")
    ports = {"shop-00001": old.port, "shop-00002": new.port}
    routers = [await start("python"), await start("haproxy")]
    split = {"shop-00001": 50, "shop-00002": 50}
    cases: dict[tuple[str, str], list[tuple[str, dict[str, str]]]] = {
        ("query", "uid"): [
            (path, {})
            for path in [
                *("/?x=1;uid=k7", "/?uid=k3&uid=k9", "/?UID=k3", "/?uid=a%20b", "/?uid="),
                *("/?a=1&uid=k5;z=2", "/p;uid=k1?y=2"),
            ]
        ],
        ("header", "X-U"): [("/", {"X-U": v}) for v in ("k1, k2", "", "k4")],
        ("cookie", "uid"): [
            ("/", {"Cookie": v}) for v in ("uid=k1; uid=k2", "a=1;uid=k5", "uid=", 'uid="k8"')
        ],
    }
    for by, requests in cases.items():
        await route(routers, table(split, ports, split_by=by))
        # a new client: a key name HAProxy did not read reloads it, and the old process
        # answers an idle connection's next request once
        async with httpx.AsyncClient(timeout=15) as client:
            for path, headers in requests:
                head = [p for k, v in headers.items() for p in (k.encode(), b": ", v.encode(), b"")]
                key = sticky_key(*by, path.encode(), head)
                ranges = traffic.sticky_ranges(split)
                want = {traffic.sticky_revision(ranges, key)} if key else set(split)
                for router in routers:
                    seen = {
                        (
                            await client.get(
                                f"http://127.0.0.1:{router.port}{path}",
                                headers={"Host": "shop.localhost", **headers},
                            )
                        ).headers["sos-revision"]
                        for _ in range(4)
                    }
                    assert seen == want, (by, path, headers, router.data_path)


async def test_the_comparisons_outlive_a_restart_of_the_server(
    ingress_factory: Callable[..., Awaitable[Ingress]], start_app: StartApp, tmp_path: Path
) -> None:
    kept = tmp_path / "shadow-comparisons.json"
    primary = start_app("shop-00001", HELLO_ITEMS="a,b,c,d")
    other = start_app("shop-00002", HELLO_ITEMS="b,a,c,x")
    ports = {"shop-00001": primary.port, "shop-00002": other.port}
    routes = table({"shop-00001": 100}, ports, shadows=[ShadowTarget("shop-00002", 100)])
    router = await ingress_factory("python", shadow_file=kept)
    await route([router], routes)
    await _recs(router, 10)
    await _report_until(router, lambda r: bool(r) and r[0].compared >= 10)  # type: ignore[attr-defined]
    before = router.shadow_report("shop")
    await router.close()  # the server stops: what it compared is written down
    again = await ingress_factory("python", shadow_file=kept)
    await route([again], routes)
    assert again.shadow_report("shop") == before
    await _recs(again, 5)  # and it goes on counting from there
    after = await _report_until(again, lambda r: bool(r) and r[0].compared >= 15)  # type: ignore[attr-defined]
    assert after[0].items_compared == 15  # type: ignore[attr-defined]
    # a file it cannot read is said in the log and started anew, never a failed start
    kept.write_text("{not json")
    fresh = await ingress_factory("python", shadow_file=kept)
    await route([fresh], routes)
    assert fresh.shadow_report("shop") == []
