"""What the local backend must do for one service: a pure function, tested as a table.

``plan(desired, current)`` compares the desired state of a service (from the store) with
what the backend runs now (``Current``: deployed revisions with their wanted counts, the
route in the router, the autoscaler's latest wants) and returns the actions that close
the gap. Running the plan again on the result yields no actions (idempotent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sos import traffic
from sos.models import normalize_revision_ref
from sos.runtime.base import DesiredService
from sos.runtime.local.ingress import ServiceRoute, ShadowTarget

__all__ = ["Action", "Current", "Deploy", "Fail", "Retire", "Scale", "SetRoute", "plan", "route_of"]


@dataclass(frozen=True)
class Deploy:
    """Start managing a revision, with ``instances`` to start (its initial scale)."""

    revision: str
    instances: int


@dataclass(frozen=True)
class Retire:
    """Stop every instance of a revision that is no longer in the store."""

    revision: str


@dataclass(frozen=True)
class Scale:
    revision: str
    instances: int


@dataclass(frozen=True)
class SetRoute:
    route: ServiceRoute | None


@dataclass(frozen=True)
class Fail:
    """A revision that cannot be started at all (its artifact is unknown)."""

    revision: str
    reason: str
    message: str


Action = Deploy | Retire | Scale | SetRoute | Fail


@dataclass(frozen=True)
class Current:
    """What the backend runs now for one service."""

    #: deployed revision id -> instances wanted now
    wanted: Mapping[str, int] = field(default_factory=dict)
    route: ServiceRoute | None = None
    #: revision id -> what the autoscaler wants (absent: no decision yet)
    autoscaler: Mapping[str, int] = field(default_factory=dict)
    #: revisions already known to be impossible to start (not planned again)
    failed: frozenset[str] = frozenset()


def route_of(desired: DesiredService) -> ServiceRoute | None:
    """The router's view of a service's traffic (revision refs normalized to ids)."""
    if desired.traffic is None:
        return None
    name = desired.service.name
    route = desired.traffic
    source, _, key = (route.split_by or "").partition(":")
    return ServiceRoute(
        name,
        tuple(traffic.shares(name, route).items()),
        traffic.tagged(name, route),
        split_by=(source, key) if key else None,
        shadows=tuple(
            ShadowTarget(normalize_revision_ref(name, m.revision), m.percent, m.items_path)
            for m in route.shadow
        ),
    )


def _artifact_problem(desired: DesiredService, revision_id: str) -> str | None:
    revision = next(r for r in desired.revisions if r.id == revision_id)
    digest = revision.artifact.digest
    what = f"artifact {revision.artifact.name} {revision.artifact.version}"
    if digest is None:
        return (
            f"{what} has no digest: the server has no artifact store to resolve it; "
            "push the artifact (sos push) to a server with an artifact store"
        )
    if digest not in desired.artifacts:
        return f"{what} ({digest}) is not in the artifact store; push it with `sos push`"
    return None


def plan(desired: DesiredService, current: Current) -> list[Action]:
    actions: list[Action] = []
    ids = [r.id for r in desired.revisions if r.id is not None]
    for revision in desired.revisions:
        rid = revision.id
        if rid is None or rid in current.failed:
            continue
        if rid not in current.wanted:
            problem = _artifact_problem(desired, rid)
            if problem is not None:
                actions.append(Fail(rid, "ArtifactMissing", problem))
                continue
            actions.append(Deploy(rid, revision.autoscaling.initial_scale))
            continue
        want = current.autoscaler.get(rid)
        if want is not None and want != current.wanted[rid]:
            actions.append(Scale(rid, want))
    for rid in current.wanted:
        if rid not in ids:
            actions.append(Retire(rid))
    route = route_of(desired)
    if route != current.route:
        actions.append(SetRoute(route))
    return actions
