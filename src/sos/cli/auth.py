"""``sos login``, ``sos whoami`` and ``sos token create|list|revoke``."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

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
from sos.models import ROLES, Role, Token

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


_EXPIRY = re.compile(r"(\d+)([hd])")


def _expiry(value: str | None) -> timedelta | None:
    """``30d`` or ``12h``: how long a new token works; None: for ever."""
    if value is None:
        return None
    match = _EXPIRY.fullmatch(value.strip())
    if match is None:
        raise typer.BadParameter(f"{value!r} is not a duration: write hours or days (12h, 30d)")
    amount = int(match[1])
    return timedelta(hours=amount) if match[2] == "h" else timedelta(days=amount)


@token_app.command("create")
@handle_errors
def create_token(
    team: str = typer.Option(None, help="The team a writer may change (needed for writers)."),
    role: str = typer.Option("writer", help="admin, writer or reader.", callback=_role),
    name: str = typer.Option(None, help="Who uses it, e.g. ci-recs [TEAM-ROLE-random]."),
    expires: str = typer.Option(
        None, help="It stops working after this long, in hours or days: 12h, 30d [never]."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create a token. Its secret is shown once: store it somewhere safe."""
    name = name or f"{team or role}-{role}-{secrets.token_hex(2)}"
    lifetime = _expiry(expires)
    with client() as c:
        created = c.create_token(name, role=_role(role), team=team, expires_in=lifetime)
    if as_json:
        emit_json(created)
        return
    team_text = f" for team {created.team}" if created.team else ""
    until = f", valid until {created.expires_at:%Y-%m-%d %H:%M} UTC" if created.expires_at else ""
    stderr.print(
        f"created {created.role} token {created.name!r}{team_text} (id {created.id}{until});"
    )
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
    now = datetime.now(UTC)

    def expiry(token: Token) -> str:
        if token.expires_at is None:
            return "never"
        if token.expires_at <= now:
            return "EXPIRED"
        return f"in {_span(token.expires_at - now)}"

    table(
        None,
        ["ID", "NAME", "ROLE", "TEAM", "CREATED BY", "AGE", "EXPIRES", "LAST USED"],
        (
            [
                t.id,
                t.name,
                t.role,
                t.team,
                t.created_by,
                age(t.created_at),
                expiry(t),
                age(t.last_used_at) if t.last_used_at else "never",
            ]
            for t in tokens
        ),
    )


def _span(delta: timedelta) -> str:
    days, hours = delta.days, delta.seconds // 3600
    return f"{days}d {hours}h" if days else f"{hours}h {delta.seconds % 3600 // 60}m"


@token_app.command("revoke")
@handle_errors
def revoke_token(ref: str = typer.Argument(..., help="Token id or name.")) -> None:
    """Revoke a token: it stops working at once."""
    with client() as c:
        revoked = c.revoke_token(ref)
    console.print(f"revoked token {revoked.name!r} (id {revoked.id})")
