"""The ``flight`` command line.

- ``flight run CONFIG --context user_id=1 [--debug] [--json]``: run a pipeline config once
  and print the per-operator log and the items.
- ``flight validate CONFIG``: validate a config without running it.
- ``flight operators``: list the registered operators.
- ``flight eval CONFIG... --interactions FILE``: evaluate configs offline (hold out each
  user's last interactions, score the top k, compare against the first config).
- ``flight replay LOG --against CONFIG...``: rerun logged requests (``flight serve
  --request-log``) through configs and compare with what was served.
- ``flight serve MODULE:APP`` or ``flight serve --configs DIR``: serve a ``flight.App`` (or
  a directory of pipeline configs) over HTTP on ``$PORT`` (default 8080).

Exit codes: 0 ok (an empty result with a reason is ok), 1 an operator failed, 2 bad usage or
an invalid config.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import traceback
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from flight.errors import FlightError
from flight.operators.registry import get_operator, operator_names
from flight.pipeline import Pipeline
from flight.result import Result

__all__ = ["app", "main"]

app = typer.Typer(
    name="flight",
    help="Flight: real-time recommendation pipelines from small operators.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # not rich markup, which eats "[...]" in help text
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"flight {metadata.version('flight-sos')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Flight: real-time recommendation pipelines from small operators."""


ConfigArg = Annotated[
    Path, typer.Argument(help="Pipeline config, YAML or JSON.", show_default=False)
]


def parse_context(pairs: list[str]) -> dict[str, Any]:
    """``["user_id=1", "genre=Drama"]`` -> ``{"user_id": 1, "genre": "Drama"}`` (YAML scalars)."""
    ctx: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--context")
        try:
            ctx[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            ctx[key.strip()] = raw
    return ctx


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _load(config: Path) -> Pipeline:
    try:
        return Pipeline.from_config(config)
    except FlightError as exc:
        raise _fail(str(exc)) from None


class _JsonLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "flight", None)
        body = {"level": record.levelname, "message": record.getMessage()}
        if isinstance(fields, dict):
            body.update(fields)
        sys.stderr.write(json.dumps(body, default=str) + "\n")


@app.command()
def run(
    config: ConfigArg,
    context: Annotated[
        list[str] | None,
        typer.Option("--context", "-c", help="Request context KEY=VALUE (repeatable)."),
    ] = None,
    return_cols: Annotated[
        str | None, typer.Option("--return-cols", help="Comma-separated columns to return.")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Include the debug trace.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (log lines to stderr).")
    ] = False,
    log_json: Annotated[
        bool, typer.Option("--log-json", help="Also write structured log records to stderr.")
    ] = False,
) -> None:
    """Run a pipeline config once and print the per-operator log and the items."""
    ctx = parse_context(context or [])
    pipeline = _load(config)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if log_json:
        engine_log = logging.getLogger("flight.engine")
        engine_log.addHandler(_JsonLines())
        engine_log.setLevel(logging.INFO)
        engine_log.propagate = False
    cols = [c.strip() for c in return_cols.split(",") if c.strip()] if return_cols else None
    try:
        result = asyncio.run(pipeline.execute(return_cols=cols, debug=debug, **ctx))
    except FlightError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        for line in result.log_lines():
            typer.echo(line, err=True)
        payload = {"result": result.to_dict(), "stats": [s.to_dict() for s in result.stats]}
        typer.echo(json.dumps(payload, indent=2))
    else:
        _print_human(pipeline, result, debug)
    if result.error is not None:
        raise typer.Exit(1)


def _print_human(pipeline: Pipeline, result: Result, debug: bool) -> None:
    # no rich markup: item values and names may hold "[...]" that must print as written
    console = Console(soft_wrap=True, markup=False)
    console.print(
        f"[bold]{escape(pipeline.name)}[/bold] per-operator log:", highlight=False, markup=True
    )
    for line in result.log_lines():
        console.print(f"  {line}", highlight=False, markup=False)
    if len(result.items):
        table = RichTable(title=f"{len(result.items)} items", title_justify="left")
        for name in result.items.columns:
            table.add_column(str(name), overflow="fold")
        for row in result.items.itertuples(index=False):
            table.add_row(*(_cell(v) for v in row))
        console.print(table)
    if debug and result.debug is not None:
        console.print("debug trace (full ids with --json --debug):", highlight=False)
        for entry in result.debug:
            ids = entry["output_ids"]
            shown = ", ".join(map(str, ids[:12])) + (", ..." if len(ids) > 12 else "")
            console.print(
                f"  {entry['role']:<7} {entry['name']} {entry['kwargs']}: "
                f"{entry['n_input']} -> {entry['n_output']} [{shown}]",
                highlight=False,
                markup=False,
            )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@app.command()
def validate(config: ConfigArg) -> None:
    """Validate a pipeline config (every operator and argument, and with a `schema:` every
    step's columns); with a `canary:` context, run it once on it as hot reload would."""
    from flight.serving.catalog import run_canary

    pipeline = _load(config)
    checked = " (columns checked against its schema)" if pipeline.schema is not None else ""
    typer.echo(
        f"{config}: pipeline {pipeline.name!r} is valid: {len(pipeline.includes)} includes, "
        f"{len(pipeline.excludes)} excludes, {len(pipeline.steps)} steps{checked}"
    )
    if pipeline.canary is not None:
        try:
            n = run_canary(pipeline, str(config))
        except FlightError as exc:
            raise _fail(str(exc), 1) from None
        typer.echo(f"canary run with {dict(pipeline.canary)}: {n} items")


@app.command()
def operators() -> None:
    """List the registered operators (built-ins, imported modules and plugins)."""
    for name in operator_names():
        cls = get_operator(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        alias = "" if cls.__name__ == name else f" (alias of {cls.__name__})"
        typer.echo(f"{name:<18} {cls.kind:<9} {doc[0] if doc else ''}{alias}")


@app.command()
def serve(
    target: Annotated[
        str | None,
        typer.Argument(
            help="The app to serve, MODULE:ATTRIBUTE (e.g. myservice.web:app) or "
            "path/to/file.py:app.",
            show_default=False,
        ),
    ] = None,
    configs: Annotated[
        Path | None,
        typer.Option(
            "--configs", help="Serve every pipeline config in this directory (reloaded on change)."
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: $HOST, else 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: $PORT, else 8080).")
    ] = None,
    app_dir: Annotated[
        Path | None, typer.Option("--app-dir", help="Import the app from this directory.")
    ] = None,
    budget_ms: Annotated[
        float | None,
        typer.Option("--budget-ms", help="Default request deadline, ms (with --configs)."),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="debug, info, warning, error (default: $FLIGHT_LOG_LEVEL, else info)."),
    ] = None,
    tracing: Annotated[
        str | None,
        typer.Option(
            help="Span exporter: otlp, console, global or none (default: $FLIGHT_TRACING)."
        ),
    ] = None,
    request_log: Annotated[
        Path | None,
        typer.Option(
            "--request-log",
            help="Append a sample of pipeline runs (context, items, latency) to this JSON-lines "
            "file, for `flight replay` (sets FLIGHT_REQUEST_LOG). Off by default.",
        ),
    ] = None,
    request_log_rate: Annotated[
        float | None,
        typer.Option("--request-log-rate", help="Share of runs logged, 0 to 1 (default 1)."),
    ] = None,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Give ?debug=true traces (every candidate id) to any caller, and serve the "
            "explorer (sets FLIGHT_DEBUG=1). Off by default.",
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Worker processes sharing the port (each loads the app): CPU-heavy pipelines "
            "use more than one core.",
        ),
    ] = 1,
) -> None:
    """Serve a flight.App (MODULE:APP) or a directory of pipeline configs over HTTP."""
    from flight.serving.server import TargetError, load_target
    from flight.serving.server import serve as run_server

    if (target is None) == (configs is None):
        raise _fail(
            "give the app to serve (flight serve myservice.web:app) or a config directory "
            "(flight serve --configs pipelines/), not both"
        )
    if debug:
        os.environ["FLIGHT_DEBUG"] = "1"  # read by every flight.App, also the target's
    if request_log is not None:
        os.environ["FLIGHT_REQUEST_LOG"] = str(request_log.resolve())
    if request_log_rate is not None:
        os.environ["FLIGHT_REQUEST_LOG_RATE"] = str(request_log_rate)
    try:
        if target is not None:
            served: Any = load_target(target, app_dir)
        else:
            from flight.serving import App

            assert configs is not None
            served = App(configs.resolve().name or "flight", configs=configs, budget_ms=budget_ms)
        if workers > 1:  # each worker process builds the app again, as checked here
            from flight.serving._worker import describe

            os.environ.update(describe(target, app_dir, configs, budget_ms))
        run_server(
            served,
            host=host,
            port=port,
            log_level=log_level,
            tracing_exporter=tracing,
            workers=workers,
        )
    except (TargetError, FileNotFoundError, ValueError, FlightError) as exc:
        level = (log_level or os.environ.get("FLIGHT_LOG_LEVEL") or "").lower()
        if level == "debug" and exc.__cause__ is not None:  # the import's own traceback
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        raise _fail(str(exc)) from None


def _register_eval() -> None:
    from flight.evaluation.cli import eval_command, replay_command

    app.command("eval")(eval_command)
    app.command("replay")(replay_command)


_register_eval()


def main() -> None:
    app()
