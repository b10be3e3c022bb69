"""``GET /api/v1/services/{name}/metrics?window=5m``: per-revision series for the web UI.

The server asks its backend for ``Backend.metrics(service)`` (cumulative request counters,
a latency histogram, in-flight requests and instances) every few seconds and keeps the
samples in a bounded in-memory ring per service (the last 15 minutes). A read turns
consecutive samples into points: requests/s, errors/s, p50/p99 latency (interpolated
within histogram buckets, like Prometheus' ``histogram_quantile``), in-flight requests
and instances running/ready. A counter that went down (the backend restarted) counts
from zero again, as Prometheus' ``rate`` does.

The answer's models (``ServiceMetrics``, ``RevisionSeries``, ``MetricsPoint``) live in
``sos.models``, shared with ``Client.metrics`` and ``sos metrics``.

Nothing is stored on disk: after a server restart the charts start empty. A backend that
does not implement ``metrics`` (Knative: there the numbers live in the cluster's
Prometheus) is answered with ``available: false`` and a message the UI shows.

``SOS_METRICS_INTERVAL`` sets the sampling period in seconds (default 2, 0.2 to 60).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from sos.errors import ServerUnavailableError, ValidationError
from sos.models import Instances, MetricsPoint, RevisionSeries, ServiceMetrics
from sos.runtime.base import Backend, RevisionMetricsSample
from sos.server.auth import Principal
from sos.server.background import running, seconds_from_env
from sos.server.errors import ERROR_RESPONSES
from sos.server.routes import ServiceName
from sos.server.visibility import can_read

__all__ = [
    "DEFAULT_INTERVAL_SECONDS",
    "RETENTION_SECONDS",
    "MetricsPoint",
    "MetricsSampler",
    "RevisionSeries",
    "ServiceMetrics",
    "parse_window",
    "quantile",
    "router",
]

log = logging.getLogger(__name__)

#: how much history the ring keeps per service
RETENTION_SECONDS = 900.0
DEFAULT_INTERVAL_SECONDS = 2.0
DEFAULT_WINDOW = "5m"
#: points per revision in one answer at most (a chart is a few hundred pixels wide)
MAX_POINTS = 200
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600}


# --------------------------------------------------------------------------- the math


def quantile(q: float, buckets: Sequence[tuple[float, int]]) -> float | None:
    """The ``q``-quantile (0..1) in seconds of a cumulative histogram, or None if empty.

    Linear interpolation inside the bucket that holds the rank; a rank in the ``+Inf``
    bucket gives the highest finite bound (nothing better is known)."""
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0
    for bound, count in buckets:
        if count >= rank and count > lower_count:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def parse_window(text: str, retention: float = RETENTION_SECONDS) -> float:
    """``"5m"``, ``"90s"``, ``"300"`` -> seconds; a clear error for anything else."""
    match = _WINDOW.match(text)
    if not match:
        raise ValidationError(
            f"window {text!r} is not a duration: write seconds or a number with s, m or h "
            "(300, 90s, 5m)",
            details={"field": "window"},
        )
    seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if not 10 <= seconds <= retention:
        raise ValidationError(
            f"window {text!r} must be between 10s and {retention / 60:g}m "
            f"(the server keeps {retention / 60:g} minutes of samples)",
            details={"field": "window"},
        )
    return seconds


@dataclass(frozen=True)
class Snapshot:
    """Every revision of one service as the backend reported it at ``at``."""

    at: float
    samples: dict[str, RevisionMetricsSample]


def _delta(
    now: RevisionMetricsSample, before: RevisionMetricsSample | None
) -> tuple[int, int, list[tuple[float, int]]]:
    """Requests, errors and the histogram between two samples (a reset counts from 0)."""
    if before is None or now.requests < before.requests or now.errors < before.errors:
        return now.requests, now.errors, list(now.latency_buckets)
    bounds_match = [b for b, _ in now.latency_buckets] == [b for b, _ in before.latency_buckets]
    if bounds_match:
        buckets = [
            (bound, count - old)
            for (bound, count), (_, old) in zip(
                now.latency_buckets, before.latency_buckets, strict=True
            )
        ]
    elif before.latency_buckets:  # a histogram with other bounds: cannot subtract
        buckets = []
    else:
        buckets = list(now.latency_buckets)
    return now.requests - before.requests, now.errors - before.errors, buckets


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


@dataclass
class _Counts:
    """Requests, errors and a latency histogram summed over some intervals."""

    requests: int = 0
    errors: int = 0
    buckets: dict[float, int] = field(default_factory=dict)

    def add(self, requests: int, errors: int, buckets: Sequence[tuple[float, int]]) -> None:
        self.requests += requests
        self.errors += errors
        for bound, count in buckets:
            self.buckets[bound] = self.buckets.get(bound, 0) + count

    def quantile_ms(self, q: float) -> float | None:
        return _ms(quantile(q, sorted(self.buckets.items())))


@dataclass
class _Window:
    totals: _Counts = field(default_factory=_Counts)
    points: list[MetricsPoint] = field(default_factory=list)
    instances: Instances | None = None


def series(
    snapshots: Sequence[Snapshot],
    since: float,
    *,
    revision: str | None = None,
    max_points: int = MAX_POINTS,
) -> tuple[list[RevisionSeries], int]:
    """Points of every revision (or just ``revision``) for the intervals ending after
    ``since``; returns them and how many sampling intervals each point spans.

    At most ``max_points`` points per revision: consecutive intervals are merged (their
    counts summed, so rates and quantiles stay exact for the merged span)."""
    pairs = [(b, n) for b, n in pairwise(snapshots) if n.at >= since and n.at > b.at]
    step = max(1, math.ceil(len(pairs) / max_points))
    windows: dict[str, _Window] = {}
    for start in range(0, len(pairs), step):
        chunk = pairs[start : start + step]
        elapsed = chunk[-1][1].at - chunk[0][0].at
        counts: dict[str, _Counts] = {}
        latest: dict[str, RevisionMetricsSample] = {}
        for before, now in chunk:
            for rid, sample in now.samples.items():
                if revision is None or rid == revision:
                    counts.setdefault(rid, _Counts()).add(*_delta(sample, before.samples.get(rid)))
                    latest[rid] = sample
        for rid, count in counts.items():
            sample = latest[rid]
            window = windows.setdefault(rid, _Window())
            window.totals.add(count.requests, count.errors, list(count.buckets.items()))
            window.instances = sample.instances
            window.points.append(
                MetricsPoint(
                    at=chunk[-1][1].at,
                    requests_per_second=round(count.requests / elapsed, 4),
                    errors_per_second=round(count.errors / elapsed, 4),
                    p50_ms=count.quantile_ms(0.5),
                    p99_ms=count.quantile_ms(0.99),
                    in_flight=sample.in_flight,
                    instances_running=sample.instances.running if sample.instances else None,
                    instances_ready=sample.instances.ready if sample.instances else None,
                )
            )
    out = [
        RevisionSeries(
            revision=rid,
            points=window.points,
            requests=window.totals.requests,
            errors=window.totals.errors,
            p50_ms=window.totals.quantile_ms(0.5),
            p99_ms=window.totals.quantile_ms(0.99),
            instances=window.instances,
        )
        for rid, window in sorted(windows.items())
    ]
    return out, step


# --------------------------------------------------------------------------- the sampler


def reports_metrics(backend: Backend) -> bool:
    """Whether the backend implements ``Backend.metrics`` (the default reports nothing)."""
    return type(backend).metrics is not Backend.metrics


class MetricsSampler:
    """Samples a backend's metrics into a bounded ring per service.

    ``run()`` samples every ``interval`` seconds until cancelled; ``sample_once()`` is one
    round (tests call it with their own ``clock``)."""

    def __init__(
        self,
        backend: Backend,
        *,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        retention: float = RETENTION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.interval = interval
        self.retention = retention
        self.clock = clock
        self.available = reports_metrics(backend)
        #: one sample more than the retention holds, so the oldest interval has a start
        self._size = int(retention / interval) + 2
        self.rings: dict[str, deque[Snapshot]] = {}

    async def sample_once(self) -> None:
        if not self.available:
            return
        names = set(await self.backend.list_services())
        for gone in set(self.rings) - names:
            del self.rings[gone]
        for name in sorted(names):
            try:
                samples = await self.backend.metrics(name)
            except Exception:  # one service's trouble must not stop the others
                log.warning("metrics of service %r could not be read", name, exc_info=True)
                continue
            ring = self.rings.get(name)
            if ring is None:
                ring = self.rings[name] = deque(maxlen=self._size)
            ring.append(Snapshot(self.clock(), {s.revision: s for s in samples}))

    async def run(self) -> None:
        failing = False
        while True:
            try:
                await self.sample_once()
            except Exception:
                # said once with the traceback, then quietly until it works again
                (log.debug if failing else log.warning)(
                    "sampling metrics failed; retrying every %g s", self.interval, exc_info=True
                )
                failing = True
            else:
                if failing:
                    log.info("sampling metrics works again")
                failing = False
            await asyncio.sleep(self.interval)

    def snapshots(self, service: str) -> list[Snapshot]:
        """A copy of the ring (taken on the event loop, where the sampler appends)."""
        return list(self.rings.get(service, ()))

    def read(
        self,
        service: str,
        window: float,
        *,
        revision: str | None = None,
        snapshots: Sequence[Snapshot] | None = None,
    ) -> ServiceMetrics:
        """The answer of the metrics API; pure given ``snapshots`` (so it may run in a
        worker thread on a copy of the ring)."""
        now = self.clock()
        message = None
        if not self.available:
            message = (
                f"the {self.backend.name or type(self.backend).__name__} backend does not "
                "report request metrics to SOS"
                + (
                    "; read them from the cluster's Prometheus (Knative's queue-proxy metrics)"
                    if self.backend.name == "knative"
                    else ""
                )
            )
        ring = self.snapshots(service) if snapshots is None else snapshots
        revisions, step = series(ring, now - window, revision=revision)
        return ServiceMetrics(
            service=service,
            window_seconds=window,
            interval_seconds=self.interval,
            step_seconds=self.interval * step,
            retention_seconds=self.retention,
            now=now,
            available=self.available,
            message=message,
            revisions=revisions,
        )


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: Any = app.state.sos
    interval = seconds_from_env("SOS_METRICS_INTERVAL", DEFAULT_INTERVAL_SECONDS, 0.2, 60)
    sampler = MetricsSampler(state.backend, interval=interval)
    state.extra["metrics"] = sampler
    async with running(sampler.run(), "sos-metrics-sampler"):
        yield


# --------------------------------------------------------------------------- the route

router = APIRouter(tags=["services"], responses=ERROR_RESPONSES, lifespan=_lifespan)


@router.get(
    "/services/{name}/metrics",
    summary="Per-revision requests/s, errors/s, p50/p99 latency and instances over a window",
)
async def metrics(
    request: Request,
    token: Principal,
    name: ServiceName,
    window: Annotated[
        str, Query(max_length=20, description="How far back: seconds, or 90s, 5m, 15m")
    ] = DEFAULT_WINDOW,
    revision: Annotated[
        str | None,
        Query(
            pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
            max_length=63,
            description="Only this revision (number or id); default: every revision",
        ),
    ] = None,
) -> ServiceMetrics:
    state = request.app.state.sos
    seconds = parse_window(window)
    service = await run_in_threadpool(state.store.get_service, name)  # 404 when unknown
    can_read(token, service.team, f"the metrics of service {name!r}")
    rev_id = None
    if revision is not None:  # 404 for a revision the service does not have
        rev_id = (await run_in_threadpool(state.control.get_revision, name, revision)).id
    sampler: MetricsSampler | None = state.extra.get("metrics")
    if sampler is None:
        raise ServerUnavailableError("the server is starting: metrics are not sampled yet")
    ring = sampler.snapshots(name)  # copied here, on the loop; the math runs in a thread
    return await run_in_threadpool(sampler.read, name, seconds, revision=rev_id, snapshots=ring)
