"""``sos login``, ``sos whoami`` and ``sos token create|list|revoke``."""

from __future__ import annotations

import secrets

import typer

from sos.cli import app
from sos.cli._output import (
    JsonOption,
    age,
    client,
    console,
    emit_json,
    handle_errors,
    stderr,
    table,
)
from sos.client import Client
from sos.config import save_client_config
from sos.models import ROLES, Role

__all__ = ["token_app"]

token_app = typer.Typer(
    help="Manage API tokens (admins only).", no_args_is_help=True, rich_markup_mode="markdown"
)
app.add_typer(token_app, name="token")


@app.command()
@handle_errors
def login(
    url: str = typer.Argument(..., help="The SOS server, e.g. http://127.0.0.1:8700"),
    token: str = typer.Option(
        ..., prompt=True, hide_input=True, help="Your token (asked for when not given)."
    ),
) -> None:
    """Check a token against a server and remember both in the config file (mode 0600)."""
    with Client(url, token) as c:
        me = c.whoami()
    path = save_client_config(url, token)
    team = f" of team {me.team}" if me.team else ""
    console.print(f"logged in to {url} as {me.name} ({me.role}{team}); saved in {path}")


@app.command()
@handle_errors
def whoami(as_json: bool = JsonOption) -> None:
    """Show which token you are using: its name, role and team."""
    with client() as c:
        me = c.whoami()
        url = c.url
        server = c.server_info()
    if as_json:
        emit_json(me)
        return
    team = f", team {me.team}" if me.team else ""
    console.print(f"{me.name} ({me.role}{team}) on {url}")
    console.print(
        f"server {server.version}, {server.backend} backend: {server.isolation}", markup=False
    )


def _role(value: str) -> Role:
    for role in ROLES:
        if value == role:
            return role
    raise typer.BadParameter(f"choose one of {', '.join(ROLES)}")


@token_app.command("create")
@handle_errors
def create_token(
    team: str = typer.Option(None, help="The team a writer may change (needed for writers)."),
    role: str = typer.Option("writer", help="admin, writer or reader.", callback=_role),
    name: str = typer.Option(None, help="Who uses it, e.g. ci-recs [TEAM-ROLE-random]."),
    as_json: bool = JsonOption,
) -> None:
    """Create a token. Its secret is shown once: store it somewhere safe."""
    name = name or f"{team or role}-{role}-{secrets.token_hex(2)}"
    with client() as c:
        created = c.create_token(name, role=_role(role), team=team)
    if as_json:
        emit_json(created)
        return
    team_text = f" for team {created.team}" if created.team else ""
    stderr.print(f"created {created.role} token {created.name!r}{team_text} (id {created.id});")
    stderr.print("its secret, shown only now:")
    print(created.secret)


@token_app.command("list")
@handle_errors
def list_tokens(as_json: bool = JsonOption) -> None:
    """List tokens (never their secrets)."""
    with client() as c:
        tokens = c.list_tokens()
    if as_json:
        emit_json(tokens)
        return
    table(
        None,
        ["ID", "NAME", "ROLE", "TEAM", "CREATED BY", "AGE"],
        ([t.id, t.name, t.role, t.team, t.created_by, age(t.created_at)] for t in tokens),
    )


@token_app.command("revoke")
@handle_errors
def revoke_token(ref: str = typer.Argument(..., help="Token id or name.")) -> None:
    """Revoke a token: it stops working at once."""
    with client() as c:
        revoked = c.revoke_token(ref)
    console.print(f"revoked token {revoked.name!r} (id {revoked.id})")
