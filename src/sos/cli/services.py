"""``sos services``, ``sos service show|delete``, ``sos revisions``, ``sos revision show``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.markup import escape

from sos.cli import app
from sos.cli._output import JsonOption, age, client, console, emit_json, handle_errors, table
from sos.errors import SOSError
from sos.models import Revision, Service, revision_parts

__all__ = ["revision_app", "service_app"]

service_app = typer.Typer(
    help="Show or delete one service.", no_args_is_help=True, rich_markup_mode="markdown"
)
revision_app = typer.Typer(
    help="Show one revision.", no_args_is_help=True, rich_markup_mode="markdown"
)
app.add_typer(service_app, name="service")
app.add_typer(revision_app, name="revision")


def short(rev_id: str | None) -> str:
    """``sfix-service-00003`` -> ``00003``: how people refer to revisions."""
    return revision_parts(rev_id)[1] if rev_id else ""


def ready_text(ready: bool, reason: str | None) -> str:
    return "yes" if ready else f"no ({reason or 'Pending'})"


def tag_url(service: Service, tag: str) -> str | None:
    """The URL that reaches ``tag`` of ``service``: what status says, or, when status has
    not caught up with a traffic change yet, the service URL with ``TAG-`` before its name
    (the rule of every backend: ``http://canary-svc.DOMAIN:PORT``)."""
    for target in service.status.traffic:
        if target.tag == tag and target.url:
            return target.url
    url = urlsplit(service.status.url or "")
    host = url.hostname or ""
    if not host.startswith(f"{service.name}."):
        return None
    return urlunsplit(url._replace(netloc=f"{tag}-{url.netloc}"))


def traffic_rows(service: Service) -> list[list[str]]:
    rows = []
    for route in service.traffic.routes if service.traffic else []:
        url = tag_url(service, route.tag) if route.tag else None
        rows.append([short(route.revision), f"{route.percent}%", route.tag or "", url or ""])
    return rows


def traffic_json(service: Service) -> dict[str, Any] | None:
    """``sos traffic --json``: the route, each tagged route with its URL."""
    if service.traffic is None:
        return None
    data = service.traffic.model_dump(mode="json")
    for route, shown in zip(service.traffic.routes, data["routes"], strict=True):
        shown["url"] = tag_url(service, route.tag) if route.tag else None
    return data


@app.command("services")
@handle_errors
def list_services(
    team: str = typer.Option(None, help="Only this team's services."),
    as_json: bool = JsonOption,
) -> None:
    """List services."""
    with client() as c:
        services = c.list_services(team)
    if as_json:
        emit_json(services)
        return
    if not services:
        console.print("No services yet. Create one with `sos deploy FILE`.")
        return
    table(
        None,
        ["NAME", "TEAM", "READY", "LATEST", "TRAFFIC", "URL", "AGE"],
        (
            [
                s.name,
                s.team,
                ready_text(s.status.ready, s.status.reason),
                short(s.latest_revision),
                " ".join(f"{short(r.revision)}={r.percent}" for r in s.traffic.routes)
                if s.traffic
                else "",
                s.status.url,
                age(s.created_at),
            ]
            for s in services
        ),
    )


@service_app.command("show")
@handle_errors
def show_service(name: str, as_json: bool = JsonOption) -> None:
    """Show a service: status, URL, traffic."""
    with client() as c:
        service = c.get_service(name)
    if as_json:
        emit_json(service)
        return
    status = service.status
    console.print(f"[bold]{escape(service.name)}[/]  team {escape(service.team)}", markup=True)
    if service.description:
        console.print(service.description)
    console.print(f"ready:            {ready_text(status.ready, status.reason)}")
    if status.message:
        console.print(f"message:          {status.message}")
    console.print(f"url:              {status.url or ''}")
    console.print(f"latest revision:  {short(service.latest_revision)}")
    console.print(f"latest ready:     {short(status.latest_ready_revision)}")
    console.print(f"resource version: {service.resource_version}")
    console.print(
        f"created:          {service.created_at:%Y-%m-%d %H:%M:%S} by {service.created_by}"
    )
    if service.traffic:
        table("traffic", ["REVISION", "PERCENT", "TAG", "URL"], traffic_rows(service))


@service_app.command("delete")
@handle_errors
def delete_service(
    name: str,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a service with all its revisions (its history stays readable)."""
    if not yes and not typer.confirm(f"Delete service {name} and all its revisions?"):
        raise typer.Exit(1)
    with client() as c:
        c.delete_service(name)
    console.print(f"service {name} deleted")


def _traffic_of(service: Service) -> dict[str, list[str]]:
    shares: dict[str, list[str]] = {}
    for route in service.traffic.routes if service.traffic else []:
        text = f"{route.percent}%" + (f" @{route.tag}" if route.tag else "")
        shares.setdefault(route.revision, []).append(text)
    return shares


@app.command("revisions")
@handle_errors
def list_revisions(name: str, as_json: bool = JsonOption) -> None:
    """List the revisions of a service, oldest first, with their traffic."""
    with client() as c:
        revisions = c.list_revisions(name)
        service = c.get_service(name)
    if as_json:
        emit_json(revisions)
        return
    if not revisions:
        console.print(f"Service {name} has no revisions yet. Create one with `sos deploy FILE`.")
        return
    shares = _traffic_of(service)
    table(
        None,
        ["REVISION", "TRAFFIC", "READY", "INSTANCES", "ARTIFACT", "AGE"],
        (
            [
                short(r.id),
                ", ".join(shares.get(r.id or "", [])),
                ready_text(r.status.ready, r.status.reason),
                f"{r.status.instances.ready}/{r.status.instances.wanted}",
                f"{r.artifact.name} {r.artifact.version}",
                age(r.created_at),
            ]
            for r in revisions
        ),
    )


def print_revision(revision: Revision) -> None:
    status = revision.status
    console.print(
        f"[bold]{escape(str(revision.id))}[/]  (service {escape(str(revision.service))})",
        markup=True,
    )
    console.print(f"ready:      {ready_text(status.ready, status.reason)}")
    if status.message:
        console.print(f"message:    {status.message}")
    console.print(f"url:        {status.url or ''}")
    console.print(
        f"instances:  {status.instances.ready} ready, {status.instances.running} running, "
        f"{status.instances.wanted} wanted"
    )
    artifact = revision.artifact
    console.print(
        f"artifact:   {artifact.name} {artifact.version}"
        + (f" ({artifact.digest})" if artifact.digest else "")
    )
    console.print(f"port:       {revision.port or '$PORT (8080 unless the runtime says)'}")
    res = revision.resources
    memory = res.memory or "-"
    if status.limits is not None and status.limits.memory_source == "server-default":
        applied = status.limits.memory or "no limit"
        memory += f" (its instances run with {applied}: the server's default)"
    console.print(f"resources:  memory {memory}, cpu {res.cpu or '-'}")
    g = revision.gunicorn_config
    console.print(
        f"serving:    {g.worker_count} worker(s) x {g.thread_count} thread(s), "
        f"class {g.worker_class or 'auto'}"
    )
    a = revision.autoscaling
    console.print(
        f"autoscale:  {a.min_scale}..{a.max_scale} instances, target concurrency "
        f"{a.target_concurrency:g}"
    )
    for env in revision.env_vars:
        value = "(hidden: only its team and admins see values)" if env.redacted else env.value
        console.print(f"env:        {env.id}={value}", markup=False)
    if revision.created_at:
        console.print(
            f"created:    {revision.created_at:%Y-%m-%d %H:%M:%S} by {revision.created_by}"
        )


@revision_app.command("show")
@handle_errors
def show_revision(name: str, ref: str, as_json: bool = JsonOption) -> None:
    """Show one revision: REF is its number (3 or 00003) or id (NAME-00003)."""
    with client() as c:
        revision = c.get_revision(name, ref)
        if as_json:
            emit_json(revision)
            return
        print_revision(revision)
        try:
            built = c.get_artifact(revision.artifact.name, revision.artifact.version)
        except SOSError:
            return  # the artifact is gone from the store: the revision says what it was
    for where, model in (built.extra.get("models") or {}).items():
        console.print(
            f"model:      {model.get('name', where)} {model.get('version', '?')} "
            f"({where}; {model.get('library', 'unknown library')})",
            highlight=False,
        )
