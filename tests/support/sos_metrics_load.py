"""A backend with a known load, for the tests of ``Client.metrics`` and ``sos metrics``.

The in-memory fake backend with counters added (``Loaded``): those tests are about what the
client and the CLI make of the numbers; ``tests/sos/ui/test_ui_live_metrics.py`` reads real
ones from the local runtime in all three faces.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sos_server import RunningServer

from sos.client import Client
from sos.models import Instances, RevisionSpec, ServiceMetrics, ServiceSpec
from sos.runtime.base import Backend, RevisionMetricsSample
from sos.runtime.fake import FakeBackend

#: revision 2 answers 10 requests (1 of them an error) per sampling round, up to these
REQUESTS, ERRORS = 50, 5
#: every answer took between 10 and 100 ms
BUCKETS = (0.01, 0.1, 1.0, float("inf"))


class Loaded(FakeBackend):
    """The fake backend, with revision 2 of every service answering a known load: counters
    grow by 10 requests and 1 error per sampling round until REQUESTS and ERRORS, every
    answer between 10 and 100 ms (so p50 is 55 ms and p99 99.1 ms, interpolated), and two
    instances running of which one is ready."""

    name = "loaded"

    def __init__(self) -> None:
        super().__init__()
        self.rounds = 0

    async def metrics(self, service: str) -> list[RevisionMetricsSample]:
        samples = await super().metrics(service)
        self.rounds += 1
        done = min(10 * (self.rounds - 1), REQUESTS)
        two = RevisionMetricsSample(
            revision=f"{service}-00002",
            requests=done,
            errors=done // 10,
            latency_buckets=tuple(zip(BUCKETS, (0, done, done, done), strict=True)),
            instances=Instances(wanted=2, running=2, ready=1),
        )
        return [s for s in samples if s.revision != two.revision] + [two]


class Silent(FakeBackend):
    """A backend without metrics, as Knative is today (the seam's default)."""

    name = "knative"
    metrics = Backend.metrics  # type: ignore[assignment]


def deploy_shop(server: RunningServer) -> None:
    spec = RevisionSpec.model_validate({"artifact": {"name": "shop_app", "version": "1"}})
    with server.client() as admin:
        admin.apply(ServiceSpec(name="shop", team="recs"))
        admin.create_revision("shop", spec)
        admin.create_revision("shop", spec)
        admin.set_traffic("shop", {1: 90, 2: 10})


def settled(client: Client, name: str = "shop", timeout: float = 30) -> ServiceMetrics:
    """Wait until the server has sampled the whole load and one quiet round after it."""
    deadline = time.monotonic() + timeout
    while True:
        data = client.metrics(name, window="1m")
        two = data.revision(2)
        if two and two.requests == REQUESTS and two.latest and two.latest.requests_per_second == 0:
            return data
        assert time.monotonic() < deadline, data
        time.sleep(0.1)


def start_loaded(
    sos_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> RunningServer:
    """A server sampling every 0.2 s with ``Loaded`` underneath and service shop (revision
    1 with 90% of traffic, revision 2 with 10%) whose whole load has been sampled."""
    monkeypatch.setenv("SOS_METRICS_INTERVAL", "0.2")
    server = sos_server(backend=Loaded())
    deploy_shop(server)
    with server.client() as client:
        settled(client)
    return server
