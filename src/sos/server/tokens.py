"""Token management (admins only): create, list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from sos.models import Token, TokenCreated, TokenSpec
from sos.server.auth import Principal, require_admin
from sos.server.errors import ERROR_RESPONSES
from sos.store import Store

__all__ = ["router"]

router = APIRouter(prefix="/tokens", tags=["auth"], responses=ERROR_RESPONSES)

TokenRef = Annotated[str, Path(description="Token id or name", pattern=r"^[A-Za-z0-9._@-]{1,100}$")]


def _store(request: Request) -> Store:
    store: Store = request.app.state.sos.store
    return store


@router.get("", summary="List tokens (never their secrets)")
def list_tokens(request: Request, token: Principal) -> list[Token]:
    require_admin(token, "list tokens")
    return _store(request).list_tokens()


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a token; the response is the only time its secret is shown",
)
def create_token(request: Request, token: Principal, spec: TokenSpec) -> TokenCreated:
    require_admin(token, "create tokens")
    return _store(request).create_token(spec, actor=token.name)


@router.delete("/{ref}", summary="Revoke a token by id or name")
def revoke_token(request: Request, token: Principal, ref: TokenRef) -> Token:
    require_admin(token, "revoke tokens")
    return _store(request).delete_token(ref)
