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
from sos.models import Shadow, ShadowReport, TrafficRoute
from sos.traffic import describe, parse_routes

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
    split_by: str = typer.Option(
        None,
        "--split-by",
        help="Sticky: the key that keeps a user on one revision (header:X-User-Id, "
        "query:user_id, cookie:uid); 'none' splits per request. Default: as it is.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Show or set how a service's traffic is split between revisions.

    Set it with REVISION=PERCENT[@TAG] arguments that sum to 100, e.g.
    `sos traffic sfix-service 3=90 2=10` or `sos traffic sfix-service 4=10@canary 3=90`.
    A failed revision gets no more traffic unless you add --force. The split stays sticky
    (--split-by) and the shadows stay (sos shadow) unless you change them.
    """
    if split_by is not None and not routes:
        raise fail("--split-by goes with the routes: sos traffic NAME 1=90 2=10 --split-by "
                   "header:X-User-Id", EXIT_USAGE)  # fmt: skip
    with client() as c:
        if routes:
            service = c.get_service(name)
            now = service.traffic
            keep = split_by if split_by is not None else (now.split_by if now else None)
            try:
                route = TrafficRoute(
                    routes=parse_routes(name, routes, service.latest_revision),
                    split_by=None if keep == "none" else keep,
                    shadow=now.shadow if now else [],
                )
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
    say_extras(service.traffic)


def say_extras(route: TrafficRoute | None) -> None:
    """The sticky key and the shadows of a route, under its table."""
    if route is None:
        return
    if route.split_by:
        console.print(f"sticky: {route.split_by} keeps each key on one revision")
    for mirror in route.shadow:
        console.print(
            f"shadow: {short(mirror.revision)} gets a copy of {mirror.percent}% of the requests"
            + (f" (items at {mirror.items_path})" if mirror.items_path else "")
        )


@app.command("shadow")
@handle_errors
def shadow(
    args: list[str] = typer.Argument(
        ..., help="NAME REVISION=PERCENT ... to mirror; NAME --off; or report NAME."
    ),
    off: bool = typer.Option(False, "--off", help="Stop mirroring requests."),
    items_path: str = typer.Option(
        None, "--items-path", help="Where item ids are in a JSON answer (items[].item_id)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Mirror a share of a service's requests to revisions that answer no one, and compare.

    `sos shadow shop 3=50` copies half of the requests to revision 3 (its answers are
    compared with the primary's and discarded; it never delays or fails a caller);
    `sos shadow shop --off` stops; `sos shadow report shop` shows the comparison.
    """
    if args[0] == "report" and len(args) == 2:
        with client() as c:
            report = c.shadow_report(args[1])
        if as_json:
            emit_json(report)
            return
        say_report(report)
        return
    name, wanted = args[0], args[1:]
    if off == bool(wanted):
        raise fail("say what to mirror (sos shadow NAME 3=50) or --off, one of them", EXIT_USAGE)
    mirrors = []
    for arg in wanted:
        ref, _, percent = arg.partition("=")
        if not ref or not percent.isdigit():
            raise fail(f"{arg!r} is not a shadow: write REVISION=PERCENT, like 3=50", EXIT_USAGE)
        mirrors.append(Shadow(revision=ref, percent=int(percent), items_path=items_path))
    with client() as c:
        current = c.get_traffic(name)
        changed = c.set_traffic(name, current.model_copy(update={"shadow": mirrors}))
    if as_json:
        emit_json(changed)
        return
    if not mirrors:
        console.print(f"{name}: no shadow; requests are no longer mirrored")
    say_extras(changed)


def say_report(report: ShadowReport) -> None:
    """One block per (primary, shadow) pair, each figure on its own line (fits 80 columns)."""
    if not report.available or not report.pairs:
        console.print(report.message or f"{report.service}: no mirrored request yet")
        return

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.1f}%"

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    console.print(f"shadow report of {report.service}", style="bold")
    for pair in report.pairs:
        lines = [
            ("compared", f"{pair.compared} answers ({pair.dropped} copies dropped)"),
            ("same status", f"{pct(pair.status_agreement)}, {pair.shadow_errors} shadow errors"),
            ("p50", f"{ms(pair.primary_p50_ms)} primary, {ms(pair.shadow_p50_ms)} shadow"),
            (
                f"overlap@{pair.k}",
                f"{num(pair.overlap_at_k)} (over {pair.items_compared} answers with items)",
            ),
            ("rank-biased overlap", num(pair.rbo)),
            ("top-1 agreement", pct(pair.top1_agreement)),
            (
                "empty answers",
                f"{pct(pair.primary_empty_rate)} primary, {pct(pair.shadow_empty_rate)} shadow",
            ),
        ]
        console.print(f"{short(pair.primary)} -> {short(pair.shadow)}")
        for label, value in lines:
            console.print(f"  {label:<20} {value}")


@app.command("rollback")
@handle_errors
def rollback(name: str, as_json: bool = JsonOption) -> None:
    """Move traffic back to the previous route in one step (again: forward again)."""
    with client() as c:
        route = c.rollback(name)
    if as_json:
        emit_json(route)
        return
    console.print(f"rolled back {name}: traffic is now {describe(route.routes)}")


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
