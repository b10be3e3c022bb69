"""Per-revision request metrics kept by the router, exposed in the Prometheus format.

The router counts in plain Python objects on the request path (a few integer additions
per request) and ``prometheus_client`` renders them only when ``/metrics`` is scraped,
through a custom collector. Exposed families, labelled ``service``, ``revision``, ``tag``
(``tag`` is empty for requests that arrived through the weighted split):

- ``sos_requests_total`` (also labelled ``code``: 2xx, 3xx, 4xx, 5xx)
- ``sos_request_errors_total``: 5xx answers plus requests the router could not deliver
- ``sos_request_duration_seconds``: histogram of the time until the response is complete
- ``sos_requests_in_flight``: requests being served or held by the activator now
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

__all__ = ["BUCKETS", "ConcurrencyMeter", "MetricsCollector", "RequestStats", "render"]

#: latency bucket upper bounds in seconds (the Prometheus defaults)
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_CODES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class ConcurrencyMeter:
    """The time-weighted average of in-flight requests of one revision, between reads.

    The autoscaler reads it once a tick (``take``); the router calls ``change`` when a
    request starts (+1) or ends (-1).
    """

    __slots__ = ("_area", "_since", "_t", "in_flight")

    def __init__(self, now: float) -> None:
        self.in_flight = 0
        self._area = 0.0
        self._t = now
        self._since = now

    def change(self, now: float, delta: int) -> None:
        self._area += self.in_flight * (now - self._t)
        self._t = now
        self.in_flight += delta

    def take(self, now: float) -> float:
        """Average concurrency since the previous ``take``; starts a new period."""
        self.change(now, 0)
        span = now - self._since
        average = self._area / span if span > 0 else float(self.in_flight)
        self._area = 0.0
        self._since = now
        return average


class RequestStats:
    """Counters of one (service, revision, tag)."""

    __slots__ = (
        "buckets",
        "codes",
        "count",
        "errors",
        "in_flight",
        "labels",
        "outside",
        "total_seconds",
    )

    def __init__(self, service: str, revision: str, tag: str) -> None:
        self.labels = (service, revision, tag)
        self.codes = [0, 0, 0, 0, 0]
        self.errors = 0
        #: requests in flight in this process, and in a proxy in front of it (HAProxy)
        self.in_flight = 0
        self.outside = 0
        self.count = 0
        self.total_seconds = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)

    def done(self, status: int, seconds: float) -> None:
        """One finished request; ``status`` 0 means it never got an answer."""
        self.in_flight -= 1
        self.count += 1
        self.total_seconds += seconds
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        if status >= 500 or status == 0:
            self.errors += 1
        if status:
            self.codes[min(max(status // 100, 1), 5) - 1] += 1
        else:
            self.codes[4] += 1

    def add(self, status: int, seconds: float, count: int) -> None:
        """``count`` requests that finished elsewhere (a proxy's log) with one status and
        duration; they were never counted in flight here."""
        self.count += count
        self.total_seconds += seconds * count
        self.buckets[bisect_left(BUCKETS, seconds)] += count
        if status >= 500 or status == 0:
            self.errors += count
        self.codes[min(max(status // 100, 1), 5) - 1 if status else 4] += count


class MetricsCollector(Collector):
    """Renders every ``RequestStats`` the router has (a prometheus_client collector)."""

    def __init__(self) -> None:
        self.stats: dict[tuple[str, str, str], RequestStats] = {}

    def get(self, service: str, revision: str, tag: str) -> RequestStats:
        key = (service, revision, tag)
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = RequestStats(service, revision, tag)
        return stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        labels = ["service", "revision", "tag"]
        requests = CounterMetricFamily(
            "sos_requests", "Requests answered, by status class", labels=[*labels, "code"]
        )
        errors = CounterMetricFamily(
            "sos_request_errors", "5xx answers and requests that got no answer", labels=labels
        )
        in_flight = GaugeMetricFamily(
            "sos_requests_in_flight", "Requests being served or held now", labels=labels
        )
        latency = HistogramMetricFamily(
            "sos_request_duration_seconds", "Time to a complete response", labels=labels
        )
        for stats in list(self.stats.values()):
            names = list(stats.labels)
            for code, value in zip(_CODES, stats.codes, strict=True):
                if value:
                    requests.add_metric([*names, code], value)
            errors.add_metric(names, stats.errors)
            in_flight.add_metric(names, stats.in_flight + stats.outside)
            cumulative, running = [], 0
            for bound, value in zip([*BUCKETS, float("inf")], stats.buckets, strict=True):
                running += value
                cumulative.append((_bound(bound), running))
            latency.add_metric(names, cumulative, stats.total_seconds)
        yield requests
        yield errors
        yield in_flight
        yield latency


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def render(collector: MetricsCollector) -> bytes:
    """The text exposition of ``collector`` (what ``GET /metrics`` returns)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
