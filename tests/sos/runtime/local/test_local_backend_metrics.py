"""LocalBackend.metrics: the router's real counters per revision, and instances, as the
server's metrics sampler (and so the web UI's charts) reads them, on both data paths."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sos_runtime import artifact_paths, make_desired

from sos.runtime.base import RevisionMetricsSample
from sos.runtime.local.backend import LocalBackend

ONE = {"autoscaling": {"min_scale": 1, "initial_scale": 1}}


@pytest.fixture
async def backend(tmp_path: Path, hello_pyz: Path, data_path: str) -> AsyncIterator[LocalBackend]:
    local = LocalBackend(
        tmp_path / "data",
        artifact_path=artifact_paths(hello_pyz),
        router_port=0,
        stop_on_close=True,
        data_path=data_path,
    )
    await local.start()
    yield local
    await local.close()


async def ready_samples(backend: LocalBackend, service: str) -> list[RevisionMetricsSample]:
    for _ in range(400):
        samples = await backend.metrics(service)
        if samples and all(s.instances and s.instances.ready for s in samples):
            await backend.router.settle()  # HAProxy routes by the ready instances too
            return samples
        await asyncio.sleep(0.05)
    raise AssertionError(f"revisions of {service} did not become ready: {samples}")


async def test_local_metrics_count_requests_errors_and_latency_per_revision(
    backend: LocalBackend, hello_pyz: Path
) -> None:
    desired = make_desired(
        "shop", [(1, hello_pyz, ONE), (2, hello_pyz, ONE)], {1: 50, 2: 50}, tags={2: "canary"}
    )
    await backend.apply(desired)
    before = await ready_samples(backend, "shop")
    assert [(s.revision, s.requests, s.errors) for s in before] == [
        ("shop-00001", 0, 0),
        ("shop-00002", 0, 0),
    ]

    router = f"http://127.0.0.1:{backend.router.port}"
    async with httpx.AsyncClient(base_url=router, timeout=30) as http:
        served = Counter()
        for _ in range(10):  # the 50/50 split (who served each says the header)
            answer = await http.get("/", headers={"Host": "shop.localhost"})
            assert answer.status_code == 200
            served[answer.headers["sos-revision"]] += 1
        # through the tag: two slow answers and one 500 from revision 2 only
        canary = {"Host": "canary-shop.localhost"}
        for _ in range(2):
            assert (await http.get("/slow?ms=300", headers=canary)).status_code == 200
        assert (await http.get("/sick", headers=canary)).status_code == 200
        assert (await http.get("/live", headers=canary)).status_code == 500

    for _ in range(200):  # HAProxy's request log is read every 100 ms
        one, two = await backend.metrics("shop")
        if one.requests + two.requests == 14:
            break
        await asyncio.sleep(0.05)
    # the metrics count what the answers said: the split's share, plus the tag's 4 on two
    assert (one.revision, one.requests, one.errors) == ("shop-00001", served["shop-00001"], 0)
    assert (two.revision, two.requests, two.errors) == ("shop-00002", served["shop-00002"] + 4, 1)
    assert served["shop-00001"] + served["shop-00002"] == 10
    assert one.instances is not None and one.instances.ready == 1
    assert one.in_flight == 0
    # the histogram is cumulative and ends with every request; the slow ones sit above 250 ms
    assert two.latency_buckets[-1] == (float("inf"), two.requests)
    below_quarter = dict(two.latency_buckets)[0.25]
    assert below_quarter == two.requests - 2
    assert two.latency_sum_seconds >= 0.6


async def test_local_metrics_of_unknown_service_are_empty(backend: LocalBackend) -> None:
    assert await backend.metrics("nothing-here") == []
