"""An in-memory backend that marks every revision ready (or failed, when a test says so with
``fail``): for tests, and for running the control plane on its own. Nothing is started;
nothing answers HTTP, so its metrics count only the requests a test says were served
(``serve``) and report the one pretend instance of each routable revision."""

from __future__ import annotations

import math
from typing import ClassVar

from sos.models import Instances, revision_parts
from sos.runtime.base import (
    Backend,
    DesiredService,
    ObservedRevision,
    ObservedService,
    RevisionMetricsSample,
)
from sos.runtime.registry import BackendContext, BackendOptions, BackendPlugin

__all__ = ["PLUGIN", "FakeBackend", "FakeOptions", "create_backend"]


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, *, domain: str = "sos.invalid") -> None:
        self.domain = domain
        self.applied: dict[str, DesiredService] = {}
        #: every apply call in order, so tests can see what the reconciler asked for
        self.calls: list[tuple[str, str]] = []
        #: revision id -> (reason, message) of revisions that observe as failed
        self.failing: dict[str, tuple[str, str]] = {}
        #: revision id -> [requests, errors, {latency bound: count}] (``serve``)
        self.served: dict[str, tuple[int, int, dict[float, int]]] = {}

    def serve(self, revision: str, requests: int, errors: int = 0, seconds: float = 0.01) -> None:
        """Count ``requests`` answered by ``revision`` (``errors`` of them 5xx), each in
        ``seconds``, as if a router had served them: its metrics report them from now on."""
        count, failed, buckets = self.served.get(revision, (0, 0, {}))
        bound = next(b for b in _BOUNDS if seconds <= b)
        buckets = {**buckets, bound: buckets.get(bound, 0) + requests}
        self.served[revision] = (count + requests, failed + errors, buckets)

    def fail(self, revision: str, reason: str = "CrashLoop", message: str = "") -> None:
        """Make ``revision`` observe as failed from now on (a crash loop, say)."""
        self.failing[revision] = (reason, message)
        if self.on_change is not None:
            self.on_change(revision_parts(revision)[0])

    async def apply(self, desired: DesiredService) -> None:
        self.applied[desired.service.name] = desired
        self.calls.append(("apply", desired.service.name))

    async def observe(self, name: str) -> ObservedService | None:
        desired = self.applied.get(name)
        if desired is None:
            return None
        revisions = {
            rid: ObservedRevision(
                id=rid,
                ready=True,
                reason="Ready",
                instances=instances,
                url=f"http://{rid}.{self.domain}",
            )
            if rid not in self.failing
            else ObservedRevision(
                id=rid,
                ready=False,
                reason=self.failing[rid][0],
                message=self.failing[rid][1] or None,
                instances=instances,
                url=f"http://{rid}.{self.domain}",
                failed=True,
            )
            for rid, instances in _instances(desired).items()
        }
        tags = {
            route.tag: f"http://{route.tag}-{name}.{self.domain}"
            for route in (desired.traffic.routes if desired.traffic else [])
            if route.tag
        }
        has_traffic = desired.traffic is not None
        return ObservedService(
            name=name,
            ready=has_traffic,
            reason="Ready" if has_traffic else "NoTraffic",
            message=None if has_traffic else "create a revision to give the service traffic",
            url=f"http://{name}.{self.domain}",
            revisions=revisions,
            tag_urls=tags,
        )

    async def delete(self, name: str) -> None:
        self.applied.pop(name, None)
        self.calls.append(("delete", name))

    async def list_services(self) -> list[str]:
        return sorted(self.applied)

    async def metrics(self, service: str) -> list[RevisionMetricsSample]:
        desired = self.applied.get(service)
        if desired is None:
            return []
        return [
            RevisionMetricsSample(
                revision=rid,
                instances=instances,
                requests=self.served.get(rid, (0, 0, {}))[0],
                errors=self.served.get(rid, (0, 0, {}))[1],
                latency_buckets=_cumulative(self.served.get(rid, (0, 0, {}))[2]),
            )
            for rid, instances in _instances(desired).items()
        ]


_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)


def _cumulative(counts: dict[float, int]) -> tuple[tuple[float, int], ...]:
    """Per-bucket counts -> the cumulative Prometheus layout (none: no histogram)."""
    if not counts:
        return ()
    total, out = 0, []
    for bound in _BOUNDS:
        total += counts.get(bound, 0)
        out.append((bound, total))
    return tuple(out)


def _instances(desired: DesiredService) -> dict[str, Instances]:
    """One pretend instance for each routable revision, none for the others."""
    routable = desired.routable()
    return {
        rev.id: Instances(wanted=n, running=n, ready=n)
        for rev in desired.revisions
        if rev.id is not None
        for n in [1 if rev.id in routable else 0]
    }


class FakeOptions(BackendOptions):
    """``sos server --backend fake`` options."""

    label: ClassVar[str] = "fake"

    #: the domain of the URLs it reports
    domain: str = "sos.invalid"


def create_backend(context: BackendContext) -> FakeBackend:
    return FakeBackend(domain=FakeOptions.parse(context.options).domain)


PLUGIN = BackendPlugin(
    name="fake",
    factory=create_backend,
    options=FakeOptions,
    description="in memory, marks revisions ready: for tests and the control plane alone",
)
