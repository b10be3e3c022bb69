"""``sos traffic``, ``sos rollback``, ``sos history``.

Traffic syntax: ``REVISION=PERCENT[@TAG]``, one argument per route::

    sos traffic sfix-service 3=90 2=10            # 90% to revision 3, 10% to revision 2
    sos traffic sfix-service 00004=10@canary 3=90 # 10% to 4, also reachable by tag "canary"
    sos traffic sfix-service 4=0@preview 3=100    # 4 gets no share, only its tag URL
    sos traffic sfix-service latest=100           # everything to the newest revision

REVISION is a number (3, 00003), an id (sfix-service-00003) or ``latest``.
"""

from __future__ import annotations

import contextlib

import pydantic
import typer

from sos.cli import app
from sos.cli._output import (
    EXIT_USAGE,
    JsonOption,
    client,
    console,
    describe_validation,
    emit_json,
    fail,
    handle_errors,
    table,
)
from sos.cli.services import short, traffic_json, traffic_rows
from sos.errors import NotReadyError
from sos.models import TrafficRoute
from sos.traffic import parse_routes

__all__ = ["parse_routes"]  # re-exported from sos.traffic


@app.command("traffic")
@handle_errors
def traffic(
    name: str = typer.Argument(..., help="Service name."),
    routes: list[str] = typer.Argument(
        None, help="REVISION=PERCENT[@TAG] ...; none shows the current split."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Move traffic even to a failed revision (its share of requests gets 503s).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Show or set how a service's traffic is split between revisions.

    Set it with REVISION=PERCENT[@TAG] arguments that sum to 100, e.g.
    `sos traffic sfix-service 3=90 2=10` or `sos traffic sfix-service 4=10@canary 3=90`.
    A failed revision gets no more traffic unless you add --force.
    """
    with client() as c:
        if routes:
            service = c.get_service(name)
            try:
                route = TrafficRoute(routes=parse_routes(name, routes, service.latest_revision))
            except pydantic.ValidationError as exc:
                raise fail(describe_validation(exc), EXIT_USAGE) from None
            except ValueError as exc:
                raise fail(str(exc), EXIT_USAGE) from None
            changed = c.set_traffic(name, route, force=force)
            if changed.resource_version is not None:
                # the tag URLs come from status once it reflects this change (a backend
                # that is slow to answer: the rule every backend follows, said as such)
                with contextlib.suppress(NotReadyError):
                    c.wait_observed(name, changed.resource_version, timeout=10, interval=0.1)
        service = c.get_service(name)
    if as_json:
        emit_json(traffic_json(service))
        return
    if service.traffic is None:
        console.print(f"Service {name} has no traffic yet: its first revision will get all of it.")
        return
    table(f"traffic of {name}", ["REVISION", "PERCENT", "TAG", "URL"], traffic_rows(service))


@app.command("rollback")
@handle_errors
def rollback(name: str, as_json: bool = JsonOption) -> None:
    """Move traffic back to the previous route in one step (again: forward again)."""
    with client() as c:
        route = c.rollback(name)
    if as_json:
        emit_json(route)
        return
    split = " ".join(
        f"{short(r.revision)}={r.percent}" + (f"@{r.tag}" if r.tag else "") for r in route.routes
    )
    console.print(f"rolled back {name}: traffic is now {split}")


@app.command("history")
@handle_errors
def history(
    name: str,
    limit: int = typer.Option(50, min=1, max=1000, help="How many changes to show."),
    as_json: bool = JsonOption,
) -> None:
    """Who changed what and when, newest first."""
    with client() as c:
        entries = c.history(name, limit=limit)
    if as_json:
        emit_json(entries)
        return
    table(
        f"history of {name}",
        ["WHEN", "WHO", "WHAT", "SUMMARY"],
        ([f"{e.at:%Y-%m-%d %H:%M:%S}", e.actor, e.action, e.summary] for e in entries),
    )
