"""Output conventions shared by every ``sos`` command.

Tables (rich) for people, ``--json`` for scripts, errors on stderr as ``error: message``,
and exit codes scripts can trust: 0 ok, 1 a failure SOS reported, 2 bad usage (typer's own
usage errors exit 2 too).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import pydantic
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sos.client import Client
from sos.errors import SOSError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "JsonOption",
    "age",
    "client",
    "console",
    "describe_validation",
    "emit_json",
    "fail",
    "handle_errors",
    "stderr",
    "table",
]

EXIT_FAILURE = 1
EXIT_USAGE = 2

# no rich markup: messages, names and log lines hold "[...]" that must print as written
# (the few styled lines pass markup=True and escape what they interpolate)
console = Console(highlight=False, soft_wrap=True, markup=False)
stderr = Console(stderr=True, highlight=False, markup=False)

JsonOption = typer.Option(False, "--json", help="Print JSON for scripts instead of a table.")

P = ParamSpec("P")
R = TypeVar("R")


def client() -> Client:
    return Client()


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    stderr.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn SOS errors into ``error: ...`` on stderr and exit code 1, and a model built
    from bad options (pydantic refuses it) into ``error: ...`` and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except SOSError as exc:
            raise fail(exc.message) from None
        except pydantic.ValidationError as exc:
            raise fail(describe_validation(exc), EXIT_USAGE) from None

    return wrapper


def describe_validation(exc: pydantic.ValidationError, where: str = "") -> str:
    """A pydantic error as people read it: ``where: field.sub[0]: what is wrong``."""
    lines = []
    for error in exc.errors():
        loc = ""
        for part in error.get("loc", ()):
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        if loc and "." not in loc and msg.startswith(f"{loc}:"):
            loc = ""  # the message already names the field
        lines.append(f"{loc}: {msg}" if loc else msg)
    text = "; ".join(lines)
    return f"{where}: {text}" if where else text


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(_plain(value), indent=2) + "\n")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(out)


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """``3m``, ``2h``, ``5d``: how long ago, as kubectl prints it."""
    if moment is None:
        return ""
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"
