"""Services, revisions, traffic, rollback, history and whoami under ``/api/v1``.

Handlers are plain ``def`` functions: FastAPI runs them in worker threads, so the store's
SQL never blocks the event loop.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from sos.errors import NotFoundError
from sos.models import (
    MAX_VERSION,
    DeployRequest,
    DeployResult,
    DesiredService,
    HistoryEntry,
    Revision,
    RevisionSpec,
    ServerInfo,
    Service,
    ServiceSpec,
    ShadowReport,
    Token,
    TrafficRoute,
)
from sos.runtime.base import Backend
from sos.server.auth import Principal
from sos.server.core import ControlPlane
from sos.server.deploy import deploy as deploy_service
from sos.server.errors import ERROR_RESPONSES
from sos.server.visibility import (
    can_read,
    redact_history,
    redact_revision,
    redact_service,
    sees_values,
)
from sos.store import Store

__all__ = ["ServiceName", "router"]

router = APIRouter(responses=ERROR_RESPONSES)

ServiceName = Annotated[
    str,
    Path(
        description="Service name (a DNS-1035 label)",
        pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
    ),
]
RevisionRef = Annotated[
    str,
    Path(
        description="Revision number (3 or 00003) or id (svc-00003)",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
    ),
]
ResourceVersion = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_VERSION,
        description="Make the write conditional on the service's resource_version",
    ),
]


def _control(request: Request) -> ControlPlane:
    control: ControlPlane = request.app.state.sos.control
    return control


def _store(request: Request) -> Store:
    store: Store = request.app.state.sos.store
    return store


@router.get("/healthz", tags=["server"], summary="Is the server up (no token needed)")
def healthz() -> dict[str, str]:
    from sos import __version__

    return {"status": "ok", "version": __version__}


@router.get("/server", tags=["server"], summary="This server: version, backend, isolation")
def server_info(request: Request, token: Principal) -> ServerInfo:
    from sos import __version__

    backend: Backend = request.app.state.sos.backend
    return ServerInfo(version=__version__, backend=backend.name, isolation=backend.isolation)


@router.get("/whoami", tags=["auth"], summary="The calling token: name, role, team")
def whoami(token: Principal) -> Token:
    return token


# --------------------------------------------------------------------------- services


@router.get("/services", tags=["services"], summary="List services")
def list_services(
    request: Request,
    token: Principal,
    team: Annotated[
        str | None, Query(pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    ] = None,
) -> list[Service]:
    return [
        service if sees_values(token, service.team) else redact_service(service)
        for service in _store(request).list_services(team)
    ]


@router.put(
    "/services/{name}",
    tags=["services"],
    summary="Create or update a service (send resource_version to make it conditional)",
    responses={201: {"model": Service, "description": "Created"}},
)
def apply_service(
    request: Request, response: Response, token: Principal, name: ServiceName, spec: ServiceSpec
) -> Service:
    service, created = _control(request).apply_service(token, name, spec)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return service


@router.get("/services/{name}", tags=["services"], summary="One service with its status")
def get_service(request: Request, token: Principal, name: ServiceName) -> Service:
    service = _store(request).get_service(name)
    return service if sees_values(token, service.team) else redact_service(service)


@router.delete(
    "/services/{name}",
    tags=["services"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a service, its revisions and traffic (history stays)",
)
def delete_service(
    request: Request,
    token: Principal,
    name: ServiceName,
    resource_version: ResourceVersion = None,
) -> Response:
    _control(request).delete_service(token, name, resource_version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/services/{name}/desired",
    tags=["services"],
    summary="The desired state a backend gets (service, revisions, traffic, artifacts)",
)
def desired_state(request: Request, token: Principal, name: ServiceName) -> DesiredService:
    desired = _control(request).desired(name)
    if desired is None:
        raise NotFoundError(f"service {name!r} does not exist", details={"service": name})
    if sees_values(token, desired.service.team):
        return desired  # its secrets are never in the JSON
    return replace(
        desired,
        service=redact_service(desired.service),
        revisions=tuple(redact_revision(r) for r in desired.revisions),
    )


def _team_of(request: Request, name: str) -> str | None:
    """The team of service ``name``; None when it does not exist (any more)."""
    try:
        return _store(request).get_service(name).team
    except NotFoundError:
        return None


# --------------------------------------------------------------------------- revisions


@router.get(
    "/services/{name}/revisions", tags=["revisions"], summary="List revisions, oldest first"
)
def list_revisions(request: Request, token: Principal, name: ServiceName) -> list[Revision]:
    revisions = _store(request).list_revisions(name)
    if sees_values(token, _team_of(request, name)):
        return revisions
    return [redact_revision(r) for r in revisions]


@router.post(
    "/services/{name}/revisions",
    tags=["revisions"],
    status_code=status.HTTP_201_CREATED,
    summary="Create a new immutable revision (the first one gets 100% of traffic)",
)
def create_revision(
    request: Request,
    response: Response,
    token: Principal,
    name: ServiceName,
    spec: RevisionSpec,
    dry_run: Annotated[
        bool,
        Query(
            description="Check everything (the artifact above all) and write nothing: 200 "
            "with the revision as it would be; the service need not exist yet"
        ),
    ] = False,
) -> Revision:
    if dry_run:
        response.status_code = status.HTTP_200_OK
    return _control(request).create_revision(token, name, spec, dry_run=dry_run)


@router.post(
    "/services/{name}/deploy",
    tags=["revisions"],
    summary="Deploy in one transaction: apply the service, create a revision (unless the "
    "newest has this spec), set traffic",
    responses={201: {"model": DeployResult, "description": "A revision was created"}},
)
def deploy(
    request: Request, response: Response, token: Principal, name: ServiceName, body: DeployRequest
) -> DeployResult:
    result = deploy_service(_control(request), token, name, body)
    if result.created and not result.dry_run:
        response.status_code = status.HTTP_201_CREATED
    return result


@router.get("/services/{name}/revisions/{ref}", tags=["revisions"], summary="One revision")
def get_revision(
    request: Request, token: Principal, name: ServiceName, ref: RevisionRef
) -> Revision:
    revision = _control(request).get_revision(name, ref)
    return revision if sees_values(token, _team_of(request, name)) else redact_revision(revision)


# --------------------------------------------------------------------------- traffic


@router.get("/services/{name}/traffic", tags=["traffic"], summary="The current traffic route")
def get_traffic(request: Request, token: Principal, name: ServiceName) -> TrafficRoute:
    return _control(request).get_traffic(name)


@router.put(
    "/services/{name}/traffic",
    tags=["traffic"],
    summary="Split traffic between revisions (send resource_version to make it conditional)",
)
def set_traffic(
    request: Request,
    token: Principal,
    name: ServiceName,
    route: TrafficRoute,
    force: Annotated[
        bool,
        Query(
            description="Move traffic even to a failed revision (409 otherwise): its share "
            "of requests gets 503s until it is replaced"
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        Query(
            description="Check the route against the service (its revisions, tags, failed "
            "revisions) with the same code and change nothing: the route as it would be"
        ),
    ] = False,
) -> TrafficRoute:
    return _control(request).set_traffic(token, name, route, force=force, dry_run=dry_run)


@router.get(
    "/services/{name}/shadow",
    tags=["traffic"],
    summary="What the shadow revisions answered next to the primary: status, latency, rankings",
)
async def shadow_report(request: Request, token: Principal, name: ServiceName) -> ShadowReport:
    service = await run_in_threadpool(_store(request).get_service, name)  # 404 when unknown
    can_read(token, service.team, f"the shadow report of service {name!r}")
    backend: Backend = request.app.state.sos.backend
    pairs = await backend.shadow_report(name)
    if pairs is None:
        return ShadowReport(
            service=name,
            available=False,
            message=f"the {backend.name} backend does not mirror requests",
        )
    shadows = service.traffic.shadow if service.traffic else []
    message = None if shadows or pairs else "no shadow: set one with `sos shadow NAME REV=PCT`"
    return ShadowReport(service=name, available=True, message=message, pairs=pairs)


@router.post(
    "/services/{name}/rollback",
    tags=["traffic"],
    summary="Go back to the previous traffic route in one step (again: forward again)",
)
def rollback(
    request: Request,
    token: Principal,
    name: ServiceName,
    resource_version: ResourceVersion = None,
) -> TrafficRoute:
    return _control(request).rollback(token, name, resource_version)


@router.get(
    "/services/{name}/history",
    tags=["history"],
    summary="Who changed what and when, newest first",
)
def history(
    request: Request,
    token: Principal,
    name: ServiceName,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_VERSION, description="Page back: ids below this")
    ] = None,
) -> list[HistoryEntry]:
    entries = _store(request).history(name, limit=limit, before=before)
    if sees_values(token, _team_of(request, name)):
        return entries
    return [redact_history(entry) for entry in entries]
