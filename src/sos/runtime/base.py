"""The seam between the control plane and whatever runs the revisions.

The reconciler hands a backend the *desired* state of one service at a time (the service,
all its revisions with their resolved artifacts, and its traffic route) and reads back the
*observed* state. ``apply`` is level-based and idempotent: calling it twice with the same
desired state changes nothing the second time, and it must be safe to call after a restart
with whatever the backend finds already running.

Implementations: ``local`` (processes, a shared router, autoscaler; the embedded default),
``knative`` (renders and applies ``serving.knative.dev/v1`` Services) and ``fake`` (in
memory; marks revisions ready, for tests and for running the control plane alone).

Semantics shared by every backend (the same as Knative's):

- a revision with traffic (a percent above zero, or a tag) is *routable*; only routable
  revisions keep ``min_scale`` instances; the others scale to zero but stay deployable;
- a revision that was never routed still gets ``initial_scale`` instances once, so that its
  readiness is known when the user creates it;
- ``observe`` reports what is true now, never what was asked.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sos.models import (
    AppliedLimits,
    DesiredService,
    Instances,
    RevisionSpec,
    ShadowComparison,
    TrafficRoute,
)

if TYPE_CHECKING:
    from sos.build.runner import BuildRunner

__all__ = [
    "Backend",
    "DesiredService",
    "LogLine",
    "ObservedRevision",
    "ObservedService",
    "RevisionMetricsSample",
]


@dataclass(frozen=True)
class ObservedRevision:
    id: str
    ready: bool
    reason: str
    message: str | None = None
    instances: Instances = field(default_factory=Instances)
    url: str | None = None
    #: a revision that will not become ready without a new revision (crash loop, bad artifact)
    failed: bool = False
    #: the limits its instances run with (its own, or the backend's default); None: not said
    limits: AppliedLimits | None = None


@dataclass(frozen=True)
class ObservedService:
    name: str
    ready: bool
    reason: str
    message: str | None = None
    url: str | None = None
    revisions: Mapping[str, ObservedRevision] = field(default_factory=dict)
    #: tag -> URL that reaches the tagged revision directly
    tag_urls: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LogLine:
    at: datetime
    service: str
    revision: str
    instance: str
    stream: str  # "stdout" | "stderr" | "platform"
    text: str


@dataclass(frozen=True)
class RevisionMetricsSample:
    """What a backend knows about one revision's requests and instances at one moment.

    Counters are cumulative since the backend started counting (they only grow, except
    after a restart of whatever counts); the server turns two samples into rates. The
    latency histogram is cumulative too, in the Prometheus layout: ``(upper bound in
    seconds, requests at or below it)`` pairs in ascending order, the last bound ``inf``.
    """

    revision: str
    #: requests answered (any status) and requests that got no answer
    requests: int = 0
    #: 5xx answers plus requests that got no answer
    errors: int = 0
    latency_buckets: tuple[tuple[float, int], ...] = ()
    latency_sum_seconds: float = 0.0
    #: requests being served (or held waiting for an instance) now
    in_flight: int = 0
    #: wanted, running and ready instances now; None when the backend cannot tell
    instances: Instances | None = None


class Backend(abc.ABC):
    """What runs revisions. One instance per server process."""

    #: registry name, used in server configuration (``--backend local``)
    name: str = ""
    #: how the code of different teams is kept apart, for people (``sos server`` prints it
    #: at start, ``GET /api/v1/server`` and ``sos whoami`` show it)
    isolation: str = "not stated by this backend"
    #: set by the server: a backend whose reality changes on its own (a crash, autoscaling)
    #: calls it with the service name so that status is written without waiting for a resync
    on_change: Callable[[str], None] | None = None

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect, adopt what is already running. Called once before the first apply."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Running revisions keep running (a restart re-adopts them)."""

    def check_revision(self, spec: RevisionSpec) -> None:  # noqa: B027 - optional hook
        """Refuse, with ``sos.errors.ValidationError`` saying why and what to do, a revision
        this backend could not run as asked (called when it is created, before it is kept)."""

    def check_traffic(self, route: TrafficRoute) -> None:  # noqa: B027 - optional hook
        """Refuse, with ``sos.errors.ValidationError`` saying why, a traffic route this
        backend could not honour (a sticky ``split_by``, ``shadow``): called with the
        normalized route before it is kept, so no setting is accepted and then ignored."""

    def build_runner(self, root: Path) -> BuildRunner | None:
        """Where this backend runs remote builds (``sos.build.runner``), keeping what it
        needs under ``root``; None: the server's own sandboxed builder (local runtime)."""
        return None

    async def shadow_report(self, service: str) -> list[ShadowComparison] | None:
        """What the shadow revisions of ``service`` answered next to the primary, pair by
        pair; None when this backend does not mirror requests."""
        return None

    @abc.abstractmethod
    async def apply(self, desired: DesiredService) -> None:
        """Drive reality towards ``desired`` for one service. Idempotent."""

    @abc.abstractmethod
    async def observe(self, name: str) -> ObservedService | None:
        """What is true now for service ``name``; None if the backend has nothing for it."""

    @abc.abstractmethod
    async def delete(self, name: str) -> None:
        """Stop and forget everything of service ``name``. Idempotent."""

    @abc.abstractmethod
    async def list_services(self) -> list[str]:
        """Names of the services the backend runs (to find orphans after a restart)."""

    async def logs(
        self,
        service: str,
        revision: str | None = None,
        *,
        tail: int = 100,
        follow: bool = False,
    ) -> AsyncIterator[LogLine]:
        """The last ``tail`` log lines of a service (or one revision), then new ones if
        ``follow``. Backends without logs yield nothing."""
        return
        yield  # pragma: no cover - makes this an async generator

    async def metrics(self, service: str) -> list[RevisionMetricsSample]:
        """Request counters and instances of every revision of ``service``, now.

        Optional: the server samples it every few seconds for the web UI's charts
        (``GET /api/v1/services/{name}/metrics``). The default reports nothing, which the
        UI shows as "this backend reports no metrics". Must be cheap and must not block.
        """
        return []
