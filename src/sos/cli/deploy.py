"""``sos deploy FILE``: apply a service, create a revision, optionally set traffic.

FILE is a Python file that declares the objects at module level::

    from sos import Service, Revision, Artifact, TrafficRoute, Route
    service = Service(name="sfix-service", team="recs")
    revision = Revision(artifact=Artifact(name="sfix_service", version="v0.0.16"))
    traffic = TrafficRoute(routes=[Route(revision="latest", percent=10, tag="canary"),
                                   Route(revision="3", percent=90)])        # optional

or YAML (``.yaml``/``.yml``, also ``.json``) with the same fields under ``service``,
``revision`` and ``traffic`` (a list of routes). In traffic, ``latest`` names the revision
this deploy created (or, if it created none, the newest one).

Revisions: a revision is immutable and every API call creates a new one, but ``sos deploy``
is idempotent: when the newest revision already has exactly this spec it creates none and
says so (``--force`` creates one anyway). Without ``traffic`` the first revision gets all the
traffic and later ones none, until you move it (``sos traffic``): a safe rollout by default.
"""

from __future__ import annotations

import runpy
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import typer
import yaml

from sos.cli import app
from sos.cli._output import (
    JsonOption,
    client,
    console,
    describe_validation,
    emit_json,
    handle_errors,
)
from sos.cli.services import short
from sos.client import Client
from sos.errors import ConflictError, NotFoundError, ValidationError
from sos.models import (
    ConfigFile,
    EnvVar,
    Revision,
    RevisionSpec,
    Route,
    Service,
    ServiceSpec,
    TrafficRoute,
    normalize_revision_ref,
)

__all__ = ["DeployPlan", "check_before_writing", "load_deploy_file", "plan_steps", "same_spec"]

_KINDS: dict[str, tuple[type[Any], ...]] = {
    "service": (ServiceSpec,),
    "revision": (RevisionSpec,),
    "traffic": (TrafficRoute,),
}


@dataclass(frozen=True)
class DeployPlan:
    source: Path
    service: ServiceSpec
    revision: RevisionSpec | None = None
    traffic: TrafficRoute | None = None
    #: the service fields the file sets (the others keep their current values)
    sets: frozenset[str] = frozenset({"description", "env_vars", "files"})


def _line_in(exc: BaseException, path: Path) -> str:
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(exc.__traceback__)
        if Path(frame.filename).resolve() == path.resolve()
    ]
    return f"{path} line {lines[-1]}" if lines else str(path)


def _load_python(path: Path) -> DeployPlan:
    try:
        namespace = runpy.run_path(str(path), run_name="__sos_deploy__")
    except pydantic.ValidationError as exc:
        where = _line_in(exc, path)
        raise ValidationError(f"{where}: {exc.title}: {describe_validation(exc)}") from None
    except Exception as exc:
        raise ValidationError(
            f"{_line_in(exc, path)}: {type(exc).__name__}: {exc}", details={"file": str(path)}
        ) from None
    found: dict[str, list[tuple[str, Any]]] = {kind: [] for kind in _KINDS}
    for var, value in namespace.items():
        if var.startswith("_"):
            continue
        for kind, types in _KINDS.items():
            if isinstance(value, types):
                found[kind].append((var, value))
    for kind, items in found.items():
        if len(items) > 1:
            names = ", ".join(var for var, _ in items)
            raise ValidationError(f"{path}: declares more than one {kind} ({names}); keep one")
    if not found["service"]:
        raise ValidationError(
            f"{path}: declares no Service; add e.g. "
            "`service = Service(name='my-service', team='my-team')`"
        )
    service = found["service"][0][1]
    revision = found["revision"][0][1] if found["revision"] else None
    traffic = found["traffic"][0][1] if found["traffic"] else None
    return DeployPlan(
        source=path,
        service=service.spec() if isinstance(service, Service) else service,
        revision=revision.spec() if revision is not None else None,
        traffic=traffic,
        sets=frozenset(service.model_fields_set),
    )


def _load_yaml(path: Path) -> DeployPlan:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path} line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValidationError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ValidationError(f"{path}: must be a mapping with keys service, revision, traffic")
    unknown = sorted(set(data) - set(_KINDS))
    if unknown:
        raise ValidationError(
            f"{path}: unknown key {unknown[0]!r}; the keys are service, revision and traffic"
        )
    if "service" not in data:
        raise ValidationError(f"{path}: needs a 'service' with at least name and team")
    traffic = data.get("traffic")
    if isinstance(traffic, list):
        traffic = {"routes": traffic}
    if isinstance(traffic, dict):
        for route in traffic.get("routes") or []:
            if isinstance(route, dict) and isinstance(route.get("revision"), int):
                route["revision"] = str(route["revision"])

    def parse(kind: str, model: type[Any], value: Any) -> Any:
        if value is None:
            return None
        try:
            return model.model_validate(value)
        except pydantic.ValidationError as exc:
            nested = any(error.get("loc") for error in exc.errors())  # else: the whole of it
            text = describe_validation(exc)
            raise ValidationError(f"{path}: {kind}{'.' if nested else ': '}{text}") from None

    return DeployPlan(
        source=path,
        service=parse("service", ServiceSpec, data["service"]),
        revision=parse("revision", RevisionSpec, data.get("revision")),
        traffic=parse("traffic", TrafficRoute, traffic),
        sets=frozenset(data["service"]) if isinstance(data["service"], dict) else frozenset(),
    )


def load_deploy_file(path: Path) -> DeployPlan:
    """Read and validate a deploy file; errors name the file, the line or field, the fix."""
    if not path.is_file():
        raise ValidationError(f"{path}: no such file")
    if path.suffix == ".py":
        return _load_python(path)
    if path.suffix in (".yaml", ".yml", ".json"):
        return _load_yaml(path)
    raise ValidationError(f"{path}: write the deploy file in Python (.py) or YAML (.yaml)")


def same_spec(
    existing: Revision,
    wanted: RevisionSpec,
    service_env: list[EnvVar],
    service_files: list[ConfigFile] | None = None,
) -> bool:
    """True when ``wanted`` (with the service's environment merged in, as the server does)
    asks for exactly what ``existing`` already is."""
    have = existing.spec().model_dump(mode="json")
    want = wanted.spec().with_service_config(service_env, service_files).model_dump(mode="json")
    if want["artifact"]["digest"] is None:
        have["artifact"]["digest"] = None
    return bool(have == want)


def service_to_apply(
    current: Service | None, plan: DeployPlan, change_team: bool
) -> tuple[ServiceSpec, str]:
    """The service spec a deploy applies, and what it changes, field by field. A file that
    does not set the description keeps the current one; moving a service to another team
    needs ``--change-team``."""
    wanted, name = plan.service, plan.service.name
    if current is None:
        return wanted, f"create service {name} for team {wanted.team}"
    kept = {
        f: getattr(current, f) for f in ("description", "env_vars", "files") if f not in plan.sets
    }
    wanted = wanted.model_copy(update=kept)
    if current.team != wanted.team and not change_team:
        raise ValidationError(
            f"{plan.source}: service {name!r} belongs to team {current.team!r} and the file "
            f"says team {wanted.team!r}: moving a service to another team needs "
            "--change-team. Nothing was changed.",
            details={"field": "service.team", "team": current.team},
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


def traffic_change(name: str, current: TrafficRoute | None, wanted: TrafficRoute) -> str:
    """What setting ``wanted`` does to the current split, for people."""

    def text(route: TrafficRoute | None) -> str:
        if route is None:
            return "none"
        return " ".join(
            f"{short(normalize_revision_ref(name, r.revision))}={r.percent}"
            + (f"@{r.tag}" if r.tag else "")
            for r in route.routes
        )

    before, after = text(current), text(wanted)
    if before == after:
        return f"keep traffic {after}"
    return f"set traffic {after} (now {before}: the file replaces it, a rollback included)"


def plan_steps(
    c: Client, plan: DeployPlan, force: bool = False, change_team: bool = False
) -> list[str]:
    """What ``sos deploy`` would do, read from the server without changing anything."""
    name = plan.service.name
    steps: list[str] = []
    try:
        current: Service | None = c.get_service(name)
    except NotFoundError:
        current = None
    steps.append(service_to_apply(current, plan, change_team)[1])
    latest = current.latest_revision if current else None
    if plan.revision is not None:
        newest = c.get_revision(name, latest) if latest and not force else None
        applied = service_to_apply(current, plan, True)[0]
        if newest is not None and same_spec(newest, plan.revision, applied.env_vars, applied.files):
            steps.append(f"create no revision: {short(newest.id)} already has this spec")
        else:
            number = int(short(latest)) + 1 if latest else 1
            latest = f"{name}-{number:05d}"
            artifact = plan.revision.artifact
            steps.append(
                f"create revision {number:05d} from artifact {artifact.name} {artifact.version}"
            )
            if current is None or current.traffic is None:
                steps.append(f"give revision {number:05d} all traffic (the first revision)")
    if plan.traffic is not None:
        route = _resolve_latest(plan.traffic, latest)
        try:
            steps.append(traffic_change(name, current.traffic if current else None, route))
        except ValueError as exc:
            raise ValidationError(f"{plan.source}: traffic: {exc}") from None
    return steps


def check_before_writing(c: Client, plan: DeployPlan) -> None:
    """Ask the server, before anything is written, about everything it would refuse after
    the service was applied (a revision it would not create, e.g. of an artifact never
    pushed, asked as a dry run; traffic naming revisions that do not exist), so that a
    refused deploy leaves nothing half-applied behind."""
    name = plan.service.name
    if plan.revision is not None:
        try:
            c.create_revision(name, plan.revision, dry_run=True)
        except (NotFoundError, ConflictError, ValidationError) as exc:
            raise type(exc)(
                f"{plan.source}: revision: {exc.message.rstrip('.')}. Nothing was changed.",
                details=exc.details,
            ) from None
    if plan.traffic is not None:
        try:
            existing = {r.id for r in c.list_revisions(name)}
        except NotFoundError:
            existing = set()
        for index, route in enumerate(plan.traffic.routes):
            if route.revision == "latest":
                if plan.revision is None and not existing:
                    raise ValidationError(
                        f"{plan.source}: traffic[{index}] names revision 'latest' but service "
                        f"{name!r} has none yet and the file makes none. Nothing was changed."
                    )
                continue
            try:
                wanted = normalize_revision_ref(name, route.revision)
            except ValueError as exc:
                raise ValidationError(f"{plan.source}: traffic[{index}]: {exc}") from None
            if wanted not in existing:
                raise ValidationError(
                    f"{plan.source}: traffic[{index}]: service {name!r} has no revision "
                    f"{short(wanted)}; list them with `sos revisions {name}`. Nothing was "
                    "changed.",
                    details={"field": f"traffic[{index}].revision"},
                )


def _resolve_latest(route: TrafficRoute, latest: str | None) -> TrafficRoute:
    routes = []
    for r in route.routes:
        if r.revision == "latest":
            if latest is None:
                raise ValidationError("traffic names revision 'latest' but there is none yet")
            r = Route(revision=latest, percent=r.percent, tag=r.tag)
        routes.append(r)
    return TrafficRoute(routes=routes, resource_version=route.resource_version)


@app.command()
@handle_errors
def deploy(
    file: Path = typer.Argument(..., help="A Python or YAML deploy file."),
    wait: bool = typer.Option(True, help="Wait until the revision is ready."),
    timeout: float = typer.Option(300, help="Seconds to wait for readiness."),
    force: bool = typer.Option(False, help="Create a revision even if the newest is the same."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Validate the file and say what would change; change nothing."
    ),
    change_team: bool = typer.Option(
        False, "--change-team", help="Allow moving the service to the team the file names."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Apply a service, create a revision and optionally set its traffic, from a file.
    Fields the file does not set (the description) keep their values."""
    plan = load_deploy_file(file)
    if dry_run:
        with client() as c:
            check_before_writing(c, plan)
            steps = plan_steps(c, plan, force, change_team)
        if as_json:
            emit_json({"file": str(file), "steps": steps})
        else:
            for step in steps:
                console.print(f"would {step}")
        return
    name = plan.service.name
    created: Revision | None = None
    reused: Revision | None = None
    with client() as c:
        check_before_writing(c, plan)
        try:
            current: Service | None = c.get_service(name)
        except NotFoundError:
            current = None
        spec, change = service_to_apply(current, plan, change_team)
        service = c.apply(spec)
        if not as_json:
            console.print(f"service {name} (team {service.team}) applied: {change}")
        if plan.revision is not None:
            if service.latest_revision and not force:
                newest = c.get_revision(name, service.latest_revision)
                if same_spec(newest, plan.revision, service.env_vars, service.files):
                    reused = newest
            if reused is not None:
                if not as_json:
                    console.print(
                        f"revision {short(reused.id)} already has this spec: no new revision "
                        "(--force makes one)"
                    )
            else:
                created = c.create_revision(name, plan.revision)
                if not as_json:
                    a = created.artifact
                    console.print(
                        f"revision {short(created.id)} created ({created.id}, artifact "
                        f"{a.name} {a.version})"
                    )
        target = created or reused
        latest = target.id if target is not None else service.latest_revision
        if plan.traffic is not None:
            route = _resolve_latest(plan.traffic, latest)
            said = traffic_change(name, service.traffic, route)
            c.set_traffic(name, route)
            if not as_json:
                console.print(said.replace("set traffic", "traffic set to", 1))
        if wait and target is not None and target.id:
            if not as_json:
                console.print(f"waiting for revision {short(target.id)} to be ready ...")
            c.wait_ready(name, target.id, timeout=timeout)
        service = c.get_service(name)
    if as_json:
        emit_json({"service": service, "revision": created or reused, "created": bool(created)})
        return
    split = " ".join(
        f"{short(r.revision)}={r.percent}" + (f"@{r.tag}" if r.tag else "")
        for r in (service.traffic.routes if service.traffic else [])
    )
    console.print(f"traffic: {split or 'none yet'}")
    if (
        created is not None
        and service.traffic
        and created.id not in {r.revision for r in service.traffic.routes}
    ):
        number = int(short(created.id))
        with client() as c:
            failed = {r.id for r in c.list_revisions(name) if r.status.failed}
        routed = [r for r in service.traffic.routes if r.percent > 0]
        if routed and all(r.revision in failed for r in routed):
            # what has traffic failed: a canary share would leave most requests failing
            console.print(
                f"revision {short(created.id)} gets no traffic yet, and every revision that "
                f"has traffic failed; give it all with `sos traffic {name} {number}=100`"
            )
        else:
            keep = " ".join(f"{int(short(r.revision))}={r.percent * 9 // 10}" for r in routed[:1])
            console.print(
                f"revision {short(created.id)} gets no traffic yet; move some with "
                f"`sos traffic {name} {number}=10 {keep} ...` (or {number}=100 for all of it)"
            )
    if service.status.url:
        console.print(f"url: {service.status.url}")
