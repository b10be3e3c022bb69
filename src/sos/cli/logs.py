"""``sos logs NAME [--revision R] [--tail N] [--follow] [--json]``: a service's logs.

Lines come from the server's logs endpoint (the backend's captured stdout, stderr and
platform events such as "started", "ready", "probe failed", "exited").
"""

from __future__ import annotations

import sys

import typer

from sos.cli import app
from sos.cli._output import client, handle_errors
from sos.models import LogRecord, revision_parts

__all__ = ["logs"]


def _line(record: LogRecord, many_instances: bool) -> str:
    stamp = record.at.astimezone().strftime("%H:%M:%S.%f")[:-3]
    who = record.instance if many_instances else revision_parts(record.revision)[1]
    marker = {"stderr": " !", "platform": " *"}.get(record.stream, "  ")
    return f"{stamp} {who}{marker} {record.text}"


@app.command()
@handle_errors
def logs(
    name: str = typer.Argument(..., help="The service."),
    revision: str = typer.Option(
        None, "--revision", "-r", help="Only this revision (3, 00003 or its id)."
    ),
    tail: int = typer.Option(100, "--tail", "-n", min=0, help="How many past lines to show."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    instances: bool = typer.Option(
        False, "--instances", help="Name the instance on each line instead of the revision."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Show a service's logs: its instances' output and what the platform did.

    Lines marked ! are stderr, * are platform events (started, ready, probe failed, exited).
    """
    with client() as c:
        try:
            for record in c.logs(name, revision, tail=tail, follow=follow):
                if as_json:
                    sys.stdout.write(record.model_dump_json() + "\n")
                else:
                    sys.stdout.write(_line(record, instances) + "\n")
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
