"""``sos secret set|list|delete``: a team's secrets, whose values only its instances see."""

from __future__ import annotations

import getpass
import sys

import typer

from sos.cli import app
from sos.cli._output import (
    JsonOption,
    age,
    client,
    console,
    emit_json,
    fail,
    handle_errors,
    table,
)
from sos.client import Client

__all__ = ["secret_app"]

secret_app = typer.Typer(
    help="A team's secrets: write-only values that revisions use as environment variables.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(secret_app, name="secret")

MAX_VALUE = 65536


def _read_value(name: str) -> str:
    """The value from standard input (never from the command line, which `ps` and shell
    history show); a terminal is asked without echo."""
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of secret {name} (not shown): ")
    else:
        value = sys.stdin.read(MAX_VALUE + 2)
        if value.endswith("\n"):
            value = value[:-1]  # `echo x | sos secret set` adds one; the value does not have it
    if not value:
        raise fail(f"no value for secret {name!r}: give it on standard input")
    if len(value) > MAX_VALUE:
        raise fail(f"the value of secret {name!r} is longer than 64 KiB: put data in the artifact")
    return value


def _team(c: Client, team: str | None) -> str:
    """``--team``, else the team of the token in use (an admin's has none: it must say)."""
    if team:
        return team
    mine = c.whoami().team
    if mine is None:
        raise fail("give --team: your token belongs to no team")
    return mine


@secret_app.command("set")
@handle_errors
def set_secret(
    name: str = typer.Argument(..., help="The secret's name, e.g. db-password."),
    team: str = typer.Option(None, help="The team that owns it [your token's team]."),
    as_json: bool = JsonOption,
) -> None:
    """Create or rotate a secret; the value comes from standard input and is never shown
    again. Use it in a revision as `EnvVar(id="DB_PASSWORD", secret="db-password")`."""
    value = _read_value(name)
    with client() as c:
        secret = c.set_secret(name, value, team=_team(c, team))
    if as_json:
        emit_json(secret)
        return
    done = "created" if secret.version == 1 else f"rotated (version {secret.version})"
    console.print(f"secret {secret.name} of team {secret.team} {done}")
    if secret.version > 1:
        console.print("instances started from now on get the new value; running ones keep theirs")


@secret_app.command("list")
@handle_errors
def list_secrets(
    team: str = typer.Option(None, help="The team whose secrets to list [your token's team]."),
    as_json: bool = JsonOption,
) -> None:
    """List a team's secrets: names and versions, never values."""
    with client() as c:
        team = _team(c, team)
        secrets = c.list_secrets(team)
    if as_json:
        emit_json(secrets)
        return
    if not secrets:  # teams exist by use: a typo looks the same, so name the team
        console.print(f"team {team} has no secrets (check the name if you expected some)")
        return
    table(
        None,
        ["NAME", "VERSION", "UPDATED BY", "UPDATED AGO", "CREATED AGO"],
        ([s.name, s.version, s.updated_by, age(s.updated_at), age(s.created_at)] for s in secrets),
    )


@secret_app.command("delete")
@handle_errors
def delete_secret(
    name: str = typer.Argument(..., help="The secret's name."),
    team: str = typer.Option(None, help="The team that owns it [your token's team]."),
) -> None:
    """Delete a secret that no serving revision uses."""
    with client() as c:
        team = _team(c, team)
        c.delete_secret(name, team=team)
    console.print(f"deleted secret {name} of team {team}")
