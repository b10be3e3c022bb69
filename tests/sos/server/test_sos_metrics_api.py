"""The metrics API behind the web UI's charts: the quantile math, rates from sampled
counters (with resets), the bounded ring, and ``GET /api/v1/services/{name}/metrics``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import httpx
import pytest
from sos_server import RunningServer

from sos.errors import ValidationError
from sos.models import Instances, RevisionSpec, ServiceSpec
from sos.runtime.base import Backend, RevisionMetricsSample
from sos.runtime.fake import FakeBackend
from sos.server.metrics import MetricsSampler, Snapshot, parse_window, quantile, series

INF = math.inf
BOUNDS = (0.01, 0.1, 1.0, INF)


def hist(*per_bucket: int) -> tuple[tuple[float, int], ...]:
    """A cumulative histogram over BOUNDS from per-bucket counts."""
    total, out = 0, []
    for bound, count in zip(BOUNDS, per_bucket, strict=True):
        total += count
        out.append((bound, total))
    return tuple(out)


def sample(
    rev: str, requests: int, errors: int = 0, *buckets: int, **kw: object
) -> RevisionMetricsSample:
    return RevisionMetricsSample(
        revision=rev,
        requests=requests,
        errors=errors,
        latency_buckets=hist(*buckets) if buckets else (),
        **kw,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- quantiles


@pytest.mark.parametrize(
    ("q", "buckets", "want"),
    [
        (0.5, (), None),  # no requests: no latency
        (0.5, hist(0, 0, 0, 0), None),
        (0.5, hist(10, 0, 0, 0), 0.005),  # middle of the first bucket, from 0
        (0.5, hist(0, 10, 0, 0), 0.055),  # middle of 10..100 ms
        (0.99, hist(50, 50, 0, 0), 0.0982),  # rank 99 of 100, near the top of 10..100 ms
        (0.5, hist(2, 0, 2, 0), 0.01),  # rank 2 ends exactly at the first bound
        (0.99, hist(1, 0, 0, 9), 1.0),  # in +Inf: the highest finite bound
    ],
)
def test_quantile_interpolates_within_the_bucket_like_prometheus(
    q: float, buckets: tuple[tuple[float, int], ...], want: float | None
) -> None:
    got = quantile(q, buckets)
    assert got == pytest.approx(want) if want is not None else got is None


@pytest.mark.parametrize(
    ("text", "seconds"), [("5m", 300), ("90s", 90), ("300", 300), ("15m", 900), (" 1m ", 60)]
)
def test_window_accepts_seconds_and_durations(text: str, seconds: float) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("1h", "between 10s and 15m"),
        ("5 minutes", "not a duration"),
        ("2s", "between"),
        ("", "not"),
    ],
)
def test_window_out_of_range_or_unreadable_says_what_to_write(text: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        parse_window(text)


# --------------------------------------------------------------------------- series


def test_series_turns_counters_into_rates_and_interval_quantiles() -> None:
    snaps = [
        Snapshot(100.0, {"s-00001": sample("s-00001", 0, 0, 0, 0, 0, 0)}),
        Snapshot(102.0, {"s-00001": sample("s-00001", 20, 2, 10, 10, 0, 0, in_flight=3)}),
        Snapshot(104.0, {"s-00001": sample("s-00001", 20, 2, 10, 10, 0, 0)}),
    ]
    (rev,), step = series(snaps, since=0)
    assert step == 1
    first, idle = rev.points
    assert (first.at, first.requests_per_second, first.errors_per_second) == (102.0, 10.0, 1.0)
    assert first.p50_ms == pytest.approx(10.0)  # rank 10 of 20 ends the first bucket
    assert first.in_flight == 3
    assert (idle.requests_per_second, idle.p50_ms, idle.p99_ms) == (0.0, None, None)
    assert (rev.requests, rev.errors) == (20, 2)
    assert rev.p99_ms == pytest.approx(98.2)


def test_series_counts_a_counter_reset_from_zero_instead_of_negative() -> None:
    snaps = [
        Snapshot(0.0, {"s-00001": sample("s-00001", 500, 5)}),
        Snapshot(2.0, {"s-00001": sample("s-00001", 8, 0)}),  # the backend restarted
    ]
    (rev,), _ = series(snaps, since=0)
    assert rev.points[0].requests_per_second == 4.0
    assert rev.requests == 8


def test_series_keeps_only_the_window_and_each_revision_apart() -> None:
    snaps = [Snapshot(float(t), {}) for t in (0, 10)] + [
        Snapshot(
            20.0,
            {
                "s-00001": sample("s-00001", 10, instances=Instances(wanted=1, running=1, ready=1)),
                "s-00002": sample("s-00002", 30, instances=Instances(wanted=2, running=2, ready=1)),
            },
        ),
    ]
    got, _ = series(snaps, since=15)
    assert [r.revision for r in got] == ["s-00001", "s-00002"]
    assert [len(r.points) for r in got] == [1, 1]  # the interval ending at 10 is outside
    two = got[1]
    assert two.points[0].requests_per_second == 3.0  # a new revision counts from zero
    assert (two.points[0].instances_running, two.points[0].instances_ready) == (2, 1)
    assert two.instances == Instances(wanted=2, running=2, ready=1)


def test_long_windows_merge_intervals_without_changing_the_rates() -> None:
    # 100 intervals of 1 s; revision 1 answers 5 requests in every odd second only
    snaps = [
        Snapshot(float(t), {"s-00001": sample("s-00001", 5 * (t // 2), 0, 5 * (t // 2), 0, 0, 0)})
        for t in range(101)
    ]
    (rev,), step = series(snaps, since=0, max_points=10)
    assert step == 10 and len(rev.points) == 10
    assert {p.requests_per_second for p in rev.points} == {2.5}  # 25 requests per 10 s
    assert [p.at for p in rev.points] == [10.0 * i for i in range(1, 11)]
    assert rev.requests == 250 and rev.p50_ms == pytest.approx(5.0)
    only, _ = series(snaps, since=0, revision="s-00002")
    assert only == []


# --------------------------------------------------------------------------- sampler


class Scripted(FakeBackend):
    """A backend whose request counter grows by 10 per sampling round."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__()
        self.services = ["shop"]
        self.calls = 0

    async def list_services(self) -> list[str]:
        return list(self.services)

    async def metrics(self, service: str) -> list[RevisionMetricsSample]:
        self.calls += 1
        return [sample("shop-00001", 10 * self.calls)]


class Silent(Scripted):
    """A backend without metrics (like Knative): the default method."""

    name = "knative"
    metrics = Backend.metrics  # type: ignore[assignment]


async def test_sampler_keeps_a_bounded_ring_and_serves_rates() -> None:
    now = [1000.0]
    backend = Scripted()
    sampler = MetricsSampler(backend, interval=2, retention=10, clock=lambda: now[0])
    for _ in range(20):
        await sampler.sample_once()
        now[0] += 2
    assert len(sampler.rings["shop"]) == 7  # 10 s / 2 s, plus the start of the oldest
    got = sampler.read("shop", 10)
    assert got.available and got.interval_seconds == 2
    (rev,) = got.revisions
    assert [p.requests_per_second for p in rev.points] == [5.0] * 5
    backend.services = []
    await sampler.sample_once()
    assert sampler.rings == {}  # a deleted service leaves nothing behind


async def test_backend_without_metrics_is_reported_not_sampled() -> None:
    backend = Silent()
    sampler = MetricsSampler(backend)
    await sampler.sample_once()
    got = sampler.read("shop", 300)
    assert not got.available and got.revisions == []
    assert got.message is not None and "Prometheus" in got.message
    assert backend.calls == 0


# --------------------------------------------------------------------------- HTTP


def wait_for_points(server: RunningServer, name: str, n: int) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        body = httpx.get(
            f"{server.url}/api/v1/services/{name}/metrics",
            params={"window": "1m"},
            headers={"Authorization": f"Bearer {server.admin_token}"},
        ).json()
        revisions = body["revisions"]
        if revisions and all(len(r["points"]) >= n for r in revisions):
            return body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_metrics_api_serves_the_fake_backends_instances_to_the_services_team(
    sos_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOS_METRICS_INTERVAL", "0.2")
    server = sos_server(backend=FakeBackend())
    with server.client() as admin:
        admin.apply(ServiceSpec(name="shop", team="recs"))
        admin.create_revision(
            "shop", RevisionSpec.model_validate({"artifact": {"name": "a", "version": "1"}})
        )
    reader = server.token("dashboards", role="reader", team="recs")
    stranger = server.token("other-dashboards", role="reader")
    body = wait_for_points(server, "shop", 2)
    assert body["available"] is True and body["interval_seconds"] == 0.2
    (rev,) = body["revisions"]
    assert rev["revision"] == "shop-00001"
    assert rev["points"][-1]["instances_ready"] == 1  # the fake's one pretend instance
    assert rev["points"][-1]["requests_per_second"] == 0  # nothing answers HTTP there
    as_reader = httpx.get(
        f"{server.url}/api/v1/services/shop/metrics",
        headers={"Authorization": f"Bearer {reader}"},
    )
    assert as_reader.status_code == 200 and as_reader.json()["window_seconds"] == 300
    as_stranger = httpx.get(
        f"{server.url}/api/v1/services/shop/metrics",
        headers={"Authorization": f"Bearer {stranger}"},
    )
    assert as_stranger.status_code == 403  # a reader of no team: not its metrics


def test_metrics_api_answers_for_one_revision_when_asked(
    sos_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOS_METRICS_INTERVAL", "0.2")
    server = sos_server(backend=FakeBackend())
    spec = RevisionSpec.model_validate({"artifact": {"name": "a", "version": "1"}})
    with server.client() as admin:
        admin.apply(ServiceSpec(name="shop", team="recs"))
        admin.create_revision("shop", spec)
        admin.create_revision("shop", spec)
    wait_for_points(server, "shop", 2)
    url = f"{server.url}/api/v1/services/shop/metrics"
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    two = httpx.get(url, params={"revision": "2"}, headers=auth).json()
    assert [r["revision"] for r in two["revisions"]] == ["shop-00002"]
    assert two["revisions"][0]["points"][-1]["instances_running"] == 0  # no traffic: none
    missing = httpx.get(url, params={"revision": "9"}, headers=auth)
    assert missing.status_code == 404 and "shop-00009" in missing.json()["error"]["message"]


def test_metrics_api_refuses_no_token_unknown_services_and_bad_windows(
    server: RunningServer,
) -> None:
    url = f"{server.url}/api/v1/services"
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    assert httpx.get(f"{url}/shop/metrics").status_code == 401
    missing = httpx.get(f"{url}/nope/metrics", headers=auth)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    with server.client() as admin:
        admin.apply(ServiceSpec(name="shop", team="recs"))
    bad = httpx.get(f"{url}/shop/metrics", params={"window": "2h"}, headers=auth)
    assert bad.status_code == 422
    assert "between 10s and 15m" in bad.json()["error"]["message"]
