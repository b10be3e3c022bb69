"""Bearer-token auth: who is calling, and may they do this?

Roles: ``admin`` may do everything (and manage tokens); ``writer`` may change the services of
its one team; ``reader`` may only read. Every read needs some valid token. No or unknown
token -> 401 (``AuthenticationError``); a valid token without the right -> 403.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sos.errors import AuthenticationError, PermissionDeniedError
from sos.models import Token

__all__ = ["Principal", "bearer", "can_write", "current_token", "require_admin"]

bearer = HTTPBearer(
    auto_error=False,
    description="An SOS token: `sos server` writes the admin token under its data dir; "
    "admins create more with `sos token create`",
)


def current_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Token:
    if credentials is None or not credentials.credentials:
        raise AuthenticationError(
            "no token: send `Authorization: Bearer <token>` (set SOS_TOKEN or run "
            "`sos login URL --token TOKEN`)"
        )
    store = request.app.state.sos.store
    token: Token | None = store.token_for_secret(credentials.credentials)
    if token is None:
        raise AuthenticationError(
            "the server does not know this token (mistyped, or revoked): ask an admin for a "
            "token with `sos token create`"
        )
    if token.expires_at is not None and store.clock() >= token.expires_at:
        raise AuthenticationError(
            f"token {token.name!r} expired at {token.expires_at:%Y-%m-%d %H:%M} UTC: ask an "
            "admin for a new one (`sos token create --expires ...`)"
        )
    store.token_used(token)
    return token


Principal = Annotated[Token, Depends(current_token)]


def can_write(token: Token, team: str, what: str) -> None:
    """Raise unless ``token`` may change ``what`` owned by ``team``."""
    if token.role == "admin":
        return
    if token.role == "reader":
        raise PermissionDeniedError(
            f"token {token.name!r} is read-only (role reader) and cannot change {what}; "
            "ask an admin for a writer token of the team",
            details={"role": token.role},
        )
    if token.team != team:
        raise PermissionDeniedError(
            f"token {token.name!r} belongs to team {token.team!r} and cannot change {what}, "
            f"which belongs to team {team!r}",
            details={"role": token.role, "team": token.team, "owner": team},
        )


def require_admin(token: Token, what: str) -> None:
    if token.role != "admin":
        raise PermissionDeniedError(
            f"only admin tokens may {what}; token {token.name!r} has role {token.role}",
            details={"role": token.role},
        )
