"""``sos metrics NAME [--window 5m] [--revision R] [--json] [--watch]``: live numbers.

One row per revision that the server has samples of: requests/s and errors/s of the latest
sampling interval, p50/p99 latency and totals over the window, instances running/ready, and
the revision's share of traffic. The same numbers as the web UI's metrics page and
``Client.metrics`` (``GET /api/v1/services/{name}/metrics``).

``--watch`` redraws the table every few seconds (in place on a terminal; one table after the
other, or one JSON object per line with ``--json``, when piped) until Ctrl-C or ``--count``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sos.cli import app
from sos.cli._output import client, console, emit_json, fail, handle_errors, stderr
from sos.cli.services import short
from sos.client import Client
from sos.errors import ServerUnavailableError
from sos.models import RevisionSeries, Service, ServiceMetrics

__all__ = ["metrics", "metrics_table"]

#: how long ``--watch`` waits between refreshes (tests replace it)
sleep: Callable[[float], None] = time.sleep


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def _shares(service: Service | None) -> dict[str, str]:
    shares: dict[str, list[str]] = {}
    for route in service.traffic.routes if service and service.traffic else []:
        shares.setdefault(route.revision, []).append(
            f"{route.percent}%" + (f" @{route.tag}" if route.tag else "")
        )
    return {rev: ", ".join(texts) for rev, texts in shares.items()}


def _window(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g}s"


def _row(series: RevisionSeries, shares: dict[str, str]) -> list[str]:
    latest = series.latest
    instances = series.instances
    return [
        short(series.revision),
        shares.get(series.revision, "0%"),
        _rate(latest.requests_per_second if latest else None),
        _ms(series.p50_ms),
        _ms(series.p99_ms),
        _rate(latest.errors_per_second if latest else None),
        f"{series.requests:,}",
        f"{series.errors:,}",
        str(instances.running) if instances else "-",
        str(instances.ready) if instances else "-",
    ]


COLUMNS = ["REVISION", "TRAFFIC", "REQ/S", "P50", "P99", "ERR/S", "REQUESTS", "ERRORS"]


def metrics_table(data: ServiceMetrics, service: Service | None = None) -> Group:
    """The table people read: one row per revision, and a caption that says what each
    number covers (rates: the latest interval; latency and totals: the window)."""
    window = _window(data.window_seconds)
    stamp = datetime.fromtimestamp(data.now).astimezone().strftime("%H:%M:%S")
    head = Text.assemble(
        (data.service, "bold"),
        f"  last {window}, sampled every {data.interval_seconds:g} s, at {stamp}",
    )
    if not data.revisions:
        return Group(
            head,
            Text(
                f"No samples in the last {window} yet: the server samples every "
                f"{data.interval_seconds:g} s once a revision has instances."
            ),
        )
    out = Table(header_style="bold", box=None, pad_edge=False, collapse_padding=True)
    for column in [*COLUMNS, "RUNNING", "READY"]:
        out.add_column(column, justify="left" if column in ("REVISION", "TRAFFIC") else "right")
    shares = _shares(service)
    for series in sorted(data.revisions, key=lambda s: s.revision, reverse=True):
        out.add_row(*_row(series, shares))
    note = Text(
        f"REQ/S, ERR/S: the latest {data.step_seconds:g} s · P50, P99, REQUESTS, ERRORS: "
        f"the last {window} · RUNNING, READY: now",
        style="dim",
    )
    return Group(head, out, note)


def _fetch(
    c: Client, name: str, window: str, revision: str | None
) -> tuple[ServiceMetrics, Service]:
    data = c.metrics(name, window=window, revision=revision)
    return data, c.get_service(name)


def _unavailable(data: ServiceMetrics) -> typer.Exit:
    return fail(f"no metrics for {data.service}: {data.message or 'the backend reports none'}")


@app.command("metrics")
@handle_errors
def metrics(
    name: str = typer.Argument(..., help="The service."),
    window: str = typer.Option(
        "5m", "--window", "-w", help="How far back: seconds, or 90s, 5m, up to 15m."
    ),
    revision: str = typer.Option(
        None, "--revision", "-r", help="Only this revision (3, 00003 or its id)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON for scripts (with --watch: one object per line)."
    ),
    watch: bool = typer.Option(False, "--watch", help="Keep refreshing until Ctrl-C."),
    interval: float = typer.Option(
        None,
        "--interval",
        min=0.5,
        help="Seconds between refreshes with --watch (default: the server's sampling "
        "interval, at least 2).",
    ),
    count: int = typer.Option(
        None, "--count", min=1, help="With --watch: stop after this many refreshes."
    ),
) -> None:
    """Show a service's live numbers per revision (requests/s, p50/p99, errors, instances)."""
    with client() as c:
        data, service = _fetch(c, name, window, revision)
        if not watch:
            if as_json:
                emit_json(data)
            else:
                console.print(metrics_table(data, service))
            if not data.available:
                raise _unavailable(data)
            return
        if not data.available:
            raise _unavailable(data)
        _watch(c, name, window, revision, data, service, as_json, interval, count)


def _watch(
    c: Client,
    name: str,
    window: str,
    revision: str | None,
    data: ServiceMetrics,
    service: Service,
    as_json: bool,
    interval: float | None,
    count: int | None,
) -> None:
    period = interval or max(2.0, data.interval_seconds)
    live = (
        Live(console=console, auto_refresh=False) if console.is_terminal and not as_json else None
    )
    shown = 0
    try:
        if live is not None:
            live.start()
        while True:
            if as_json:
                sys.stdout.write(json.dumps(data.model_dump(mode="json")) + "\n")
                sys.stdout.flush()
            elif live is not None:
                live.update(metrics_table(data, service), refresh=True)
            else:
                console.print(metrics_table(data, service))
                console.print()
            shown += 1
            if count is not None and shown >= count:
                return
            sleep(period)
            while True:
                try:
                    data, service = _fetch(c, name, window, revision)
                    break
                except ServerUnavailableError as exc:  # a restart: keep trying
                    stderr.print(f"{exc.message}; retrying in {period:g} s")
                    sleep(period)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    finally:
        if live is not None:
            live.stop()
