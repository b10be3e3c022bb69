"""SOS objects for the Knative tests: a service, its revisions, traffic and artifacts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sos.models import (
    Artifact,
    ArtifactMetadata,
    Revision,
    Route,
    Service,
    TrafficRoute,
)
from sos.runtime.base import DesiredService

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def artifact(
    digest: str = DIGEST_A,
    language: str = "python",
    runtime_version: str = "3.11.9",
    name: str = "recs",
    version: str = "v1",
) -> ArtifactMetadata:
    return ArtifactMetadata(
        name=name,
        version=version,
        language=language,  # type: ignore[arg-type]
        runtime_version=runtime_version,
        entry_point="app:app",
        digest=digest,
        size=1234,
        created_by="ci",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def revision(n: int, digest: str = DIGEST_A, service: str = "recs", **spec: Any) -> Revision:
    return Revision.model_validate(
        {
            "id": f"{service}-{n:05d}",
            "service": service,
            "number": n,
            "artifact": Artifact(name="recs", version="v1", digest=digest).model_dump(),
            **spec,
        }
    )


def desired(
    revisions: list[Revision],
    routes: list[tuple[str | int, int, str | None]] | None = None,
    artifacts: list[ArtifactMetadata] | None = None,
    service: str = "recs",
    team: str = "ml",
) -> DesiredService:
    """``routes`` as (revision, percent, tag); default: 100% to the last revision."""
    if routes is None:
        routes = [(str(revisions[-1].id), 100, None)] if revisions else []
    traffic = (
        TrafficRoute(routes=[Route(revision=str(r), percent=p, tag=t) for r, p, t in routes])
        if routes
        else None
    )
    metas = artifacts if artifacts is not None else [artifact()]
    return DesiredService(
        service=Service(name=service, team=team),
        revisions=tuple(revisions),
        traffic=traffic,
        artifacts={meta.digest: meta for meta in metas},
    )
