"""``sos config show|set|unset|file|rm-file``: environment variables and small config files set
once on a service and merged into each new revision (its own of the same name wins)."""

from __future__ import annotations

from pathlib import Path

import typer

from sos.cli import app
from sos.cli._output import JsonOption, client, console, emit_json, fail, handle_errors
from sos.models import ConfigFile, EnvVar, Service, ServiceSpec

__all__ = ["config_app"]

config_app = typer.Typer(
    help="A service's own environment: merged into every new revision when it is created.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(config_app, name="config")

NEXT = "new revisions get it; running revisions keep what they were created with"


def _pairs(items: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"{item!r}: write {what} as KEY=VALUE", 2)
        pairs[key] = value
    return pairs


def _apply(
    name: str,
    change: str,
    edit: dict[str, EnvVar | None] | None = None,
    files: dict[str, ConfigFile | None] | None = None,
) -> Service:
    with client() as c:
        service = c.get_service(name)
        env = {var.id: var for var in service.env_vars}
        for key, var in (edit or {}).items():
            if var is None:
                env.pop(key, None)
            else:
                env[key] = var
        have = {f.path: f for f in service.files}
        for path, file in (files or {}).items():
            if file is None:
                if path not in have:
                    raise fail(f"service {name} has no config file {path!r}")
                del have[path]
            else:
                have[path] = file
        spec = ServiceSpec(
            name=service.name,
            team=service.team,
            description=service.description,
            env_vars=list(env.values()),
            files=list(have.values()),
            resource_version=service.resource_version,
        )
        updated = c.apply(spec)
    console.print(f"service {name}: {change}; {NEXT}")
    return updated


@config_app.command("show")
@handle_errors
def show(
    name: str = typer.Argument(..., help="The service."),
    as_json: bool = JsonOption,
) -> None:
    """The service's environment (values only for its team and admins)."""
    with client() as c:
        service = c.get_service(name)
    if as_json:
        emit_json({"env_vars": service.env_vars, "files": service.files})
        return
    if service.files:
        for file in service.files:
            console.print(f"file {file.path} ({len(file.content.encode())} bytes)", markup=False)
    if not service.env_vars:
        console.print(f"service {name} sets no environment variables")
    for var in service.env_vars:
        if var.secret:
            console.print(f"{var.id} from secret {var.secret}", markup=False)
        elif var.redacted:
            console.print(f"{var.id}=(hidden: only its team and admins see values)", markup=False)
        else:
            console.print(f"{var.id}={var.value}", markup=False)


@config_app.command("set")
@handle_errors
def set_vars(
    name: str = typer.Argument(..., help="The service."),
    values: list[str] = typer.Argument(None, help="KEY=VALUE pairs."),
    secret: list[str] = typer.Option(
        None, "--secret", help="KEY=SECRET: the variable takes the value of the team's secret."
    ),
) -> None:
    """Set variables on the service (a value, or a reference to a secret of its team)."""
    plain = _pairs(values or [], "values")
    refs = _pairs(secret or [], "--secret")
    if not plain and not refs:
        raise fail("give KEY=VALUE pairs or --secret KEY=SECRET", 2)
    edit: dict[str, EnvVar | None] = {k: EnvVar(id=k, value=v) for k, v in plain.items()}
    edit |= {k: EnvVar(id=k, secret=v) for k, v in refs.items()}
    _apply(name, f"set {', '.join(sorted(edit))}", edit)


@config_app.command("unset")
@handle_errors
def unset_vars(
    name: str = typer.Argument(..., help="The service."),
    keys: list[str] = typer.Argument(..., help="Names of the variables to remove."),
) -> None:
    """Remove variables from the service."""
    _apply(name, f"removed {', '.join(sorted(keys))}", dict.fromkeys(keys))


@config_app.command("file")
@handle_errors
def set_file(
    name: str = typer.Argument(..., help="The service."),
    path: str = typer.Argument(..., help="Where instances find it, under $SOS_CONFIG_DIR."),
    source: Path = typer.Option(..., "--from", help="The local file to send (text)."),
) -> None:
    """Set a small config file on the service (at most 64 KiB; 256 KiB in all)."""
    try:
        content = source.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"{source}: cannot read it as text ({exc})", 2) from None
    _apply(name, f"file {path} set", files={path: ConfigFile(path=path, content=content)})


@config_app.command("rm-file")
@handle_errors
def remove_file(
    name: str = typer.Argument(..., help="The service."),
    path: str = typer.Argument(..., help="The config file to remove."),
) -> None:
    """Remove a config file from the service."""
    _apply(name, f"file {path} removed", files={path: None})
