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
from sos.errors import SOSError, ValidationError
from sos.models import (
    DeployResult,
    RevisionSpec,
    Service,
    ServiceSpec,
    TrafficRoute,
)
from sos.traffic import describe

__all__ = ["DeployPlan", "load_deploy_file"]

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


def _service_body(plan: DeployPlan) -> ServiceSpec:
    """The service as the deploy sends it: only the fields the file sets (the server keeps
    the others as they are)."""
    sent = (set(plan.sets) & set(ServiceSpec.model_fields)) | {"name", "team"}
    return ServiceSpec.model_validate(plan.service.model_dump(include=sent))


def _deploy(
    c: Client, plan: DeployPlan, *, force: bool, change_team: bool, dry_run: bool
) -> DeployResult:
    """One call: the server applies the whole file in one transaction, or nothing."""
    try:
        return c.deploy(
            _service_body(plan),
            plan.revision,
            plan.traffic,
            force=force,
            change_team=change_team,
            dry_run=dry_run,
        )
    except SOSError as exc:
        message = exc.message.rstrip(".")
        if exc.details.get("field") == "service.team":
            message = (
                f"service {plan.service.name!r} belongs to team {exc.details['team']!r} and "
                f"the file says team {exc.details['wanted']!r}: moving a service to another "
                "team needs --change-team"
            )
        raise type(exc)(
            f"{plan.source}: {message}. Nothing was changed.", details=exc.details
        ) from None


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
    name = plan.service.name
    with client() as c:
        result = _deploy(c, plan, force=force, change_team=change_team, dry_run=dry_run)
        if dry_run:
            if as_json:
                emit_json({"file": str(file), "steps": result.steps})
            else:
                for step in result.steps:
                    console.print(f"would {step}")
            return
        service = result.service
        created = result.revision if result.created else None
        reused = None if result.created else result.revision
        if not as_json:
            console.print(f"service {name} (team {service.team}) applied: {result.steps[0]}")
            if reused is not None and reused.id:
                console.print(
                    f"revision {short(reused.id)} already has this spec: no new revision "
                    "(--force makes one)"
                )
            if created is not None and created.id:
                a = created.artifact
                console.print(
                    f"revision {short(created.id)} created ({created.id}, artifact "
                    f"{a.name} {a.version})"
                )
            for step in result.steps:
                if step.startswith(("set traffic", "keep traffic")):
                    console.print(step.replace("set traffic", "traffic set to", 1))
        target = result.revision
        if wait and target is not None and target.id:
            if not as_json:
                console.print(f"waiting for revision {short(target.id)} to be ready ...")
            c.wait_ready(name, target.id, timeout=timeout)
        service = c.get_service(name)
    if as_json:
        emit_json({"service": service, "revision": result.revision, "created": result.created})
        return
    split = describe(service.traffic.routes) if service.traffic else ""
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
