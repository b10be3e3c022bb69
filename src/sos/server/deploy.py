"""A deploy is one change: apply the service, create the revision, set the traffic, in one
transaction (``POST /api/v1/services/{name}/deploy``).

Every part goes through the same ``ControlPlane`` methods as its own endpoint does (the
same authorization, the same checks); the store's writes nest into one transaction, so a
deploy refused at its last part leaves nothing behind, and the reconciler hears of it once,
after the commit. A dry run does all of it and rolls it back: what it says is what the real
deploy would do at that moment, checked by the same code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sos import traffic
from sos.errors import NotFoundError, SOSError, ValidationError
from sos.models import (
    ConfigFile,
    DeployRequest,
    DeployResult,
    EnvVar,
    Revision,
    RevisionSpec,
    Service,
    ServiceSpec,
    Token,
)
from sos.server.core import ControlPlane

__all__ = ["deploy", "same_spec", "service_to_apply"]

#: the service fields a deploy body may leave out, keeping the current values
_KEPT = ("description", "env_vars", "files")


@contextmanager
def _part(what: str) -> Iterator[None]:
    """Say which part of the deploy an error is about."""
    try:
        yield
    except SOSError as exc:
        raise type(exc)(f"{what}: {exc.message}", details=exc.details) from None


def same_spec(
    existing: Revision,
    wanted: RevisionSpec,
    service_env: list[EnvVar],
    service_files: list[ConfigFile] | None = None,
) -> bool:
    """True when ``wanted`` (with the service's config merged in, as a new revision gets
    it) asks for exactly what ``existing`` already is."""
    have = existing.spec().model_dump(mode="json")
    want = wanted.spec().with_service_config(service_env, service_files).model_dump(mode="json")
    if want["artifact"]["digest"] is None:
        have["artifact"]["digest"] = None
    return bool(have == want)


def service_to_apply(
    current: Service | None, wanted: ServiceSpec, change_team: bool
) -> tuple[ServiceSpec, str]:
    """The service spec a deploy applies, and what it changes, field by field: the fields
    ``wanted`` leaves out keep their current values; another team needs ``change_team``."""
    name = wanted.name
    if current is None:
        return wanted, f"create service {name} for team {wanted.team}"
    kept = {f: getattr(current, f) for f in _KEPT if f not in wanted.model_fields_set}
    wanted = wanted.model_copy(update=kept)
    if current.team != wanted.team and not change_team:
        raise ValidationError(
            f"service {name!r} belongs to team {current.team!r} and the deploy says team "
            f"{wanted.team!r}: moving a service to another team needs change_team "
            "(--change-team). Nothing was changed.",
            details={"field": "service.team", "team": current.team, "wanted": wanted.team},
        )
    changes = []
    if current.team != wanted.team:
        changes.append(f"team {current.team} -> {wanted.team}")
    if current.description != wanted.description:
        changes.append(f"description {current.description!r} -> {wanted.description!r}")
    if current.files != wanted.files:
        changes.append(f"files {' '.join(sorted(f.path for f in wanted.files)) or 'none'}")
    if current.env_vars != wanted.env_vars:
        before = {v.id for v in current.env_vars}
        after = {v.id for v in wanted.env_vars}
        changes.append(
            f"env {' '.join(sorted(after)) or 'none'} (was {' '.join(sorted(before)) or 'none'})"
        )
    if not changes:
        return wanted, f"keep service {name} as it is"
    return wanted, f"update service {name}: {'; '.join(changes)}"


def _apply(control: ControlPlane, token: Token, name: str, request: DeployRequest) -> DeployResult:
    store = control.store
    try:
        current: Service | None = store.get_service(name)
    except NotFoundError:
        current = None
    with _part("service"):
        spec, change = service_to_apply(current, request.service, request.change_team)
        service, _ = control.apply_service(token, name, spec)
    steps = [change]
    revision: Revision | None = None
    created = False
    if request.revision is not None:
        with _part("revision"):
            if service.latest_revision and not request.force:
                newest = store.get_revision(name, service.latest_revision)
                if same_spec(newest, request.revision, service.env_vars, service.files):
                    revision = newest
            if revision is not None:
                number = traffic.revision_parts(revision.id or "")[1]
                steps.append(f"create no revision: {number} already has this spec")
            else:
                before = service.traffic
                revision = control.create_revision(token, name, request.revision)
                created = True
                number = traffic.revision_parts(revision.id or "")[1]
                artifact = revision.artifact
                steps.append(
                    f"create revision {number} from artifact {artifact.name} {artifact.version}"
                )
                service = store.get_service(name)
                if before is None:
                    steps.append(f"give revision {number} all traffic (the first revision)")
                elif service.traffic is not None and service.traffic.routes != before.routes:
                    steps.append(
                        f"give revision {number} all traffic (every revision that had "
                        "traffic failed)"
                    )
    if request.traffic is not None:
        with _part("traffic"):
            if request.traffic.resource_version is not None:
                raise ValidationError(
                    "a deploy is conditional on service.resource_version, not on the "
                    "traffic's: send it there",
                    details={"field": "traffic.resource_version"},
                )
            latest = revision.id if revision is not None else service.latest_revision
            route = traffic.normalize(name, request.traffic, latest=latest)
            before_route = service.traffic
            if before_route is not None and before_route.routes == route.routes:
                steps.append(f"keep traffic {traffic.describe(route)}")
            else:
                control.set_traffic(token, name, route)
                steps.append(
                    f"set traffic {traffic.describe(route)} (now "
                    f"{traffic.describe(before_route) if before_route else 'none'}: the file "
                    "replaces it, a rollback included)"
                )
            service = store.get_service(name)
    return DeployResult(
        service=service,
        revision=revision,
        created=created,
        steps=steps,
        dry_run=request.dry_run,
    )


def deploy(control: ControlPlane, token: Token, name: str, request: DeployRequest) -> DeployResult:
    """Apply ``request`` to service ``name`` as one change (see the module doc)."""
    if request.dry_run:
        return control.rehearse(lambda: _apply(control, token, name, request))
    with control.one_change():
        return _apply(control, token, name, request)
