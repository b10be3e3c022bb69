"""The ``sos`` command line: one typer app, one module per group of commands.

Each module in ``_COMMAND_MODULES`` adds its commands to ``app`` when imported. Output
conventions shared by all commands live in ``sos.cli._output``: tables for people,
``--json`` for scripts, errors on stderr, and exit codes scripts can trust
(0 ok, 1 a failure SOS reported, 2 bad usage).
"""

from __future__ import annotations

import importlib

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="sos",
    help="SOS, the Service Operator Service: build, deploy, split traffic, roll back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # help is Markdown, not rich markup, which ate "[env SOS_PORT; 8700]" and "[tool.sos]"
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        from sos import __version__

        typer.echo(f"sos {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """SOS, the Service Operator Service: build, deploy, split traffic, roll back.

    Start a server with `sos server`; clients find it through SOS_URL and SOS_TOKEN or
    `sos login URL --token TOKEN`.
    """


# Modules that register commands on ``app``; add yours here.
_COMMAND_MODULES: list[str] = [
    "configvars",
    "secrets",
    "server",
    "services",
    "traffic",
    "rollout",
    "deploy",
    "auth",
    "build",
    "logs",
    "export",
    "metrics",
]


def _load_commands() -> None:
    for module in _COMMAND_MODULES:
        importlib.import_module(f"sos.cli.{module}")


def main() -> None:
    _load_commands()
    app()
