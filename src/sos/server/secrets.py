"""A team's secrets under ``/api/v1/teams/{team}/secrets``: values are write-only.

- ``PUT /teams/{team}/secrets/{name}`` with ``{"value": "..."}``: create (201) or rotate
  (200); writers of the team and admins. The answer never carries the value.
- ``GET /teams/{team}/secrets``: names, versions and who changed them when; the team's
  tokens and admins.
- ``DELETE /teams/{team}/secrets/{name}``: 204; refused (409) while a revision that uses it
  serves traffic or carries a tag.

Revisions use a secret with ``EnvVar(id="DB_PASSWORD", secret="db-password")``; the value
reaches the instances only (``sos.store.secrets`` keeps it encrypted at rest).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from sos.errors import ConflictError, ValidationError
from sos.models import Secret, SecretValue
from sos.server.auth import Principal, can_write
from sos.server.core import ControlPlane
from sos.server.errors import ERROR_RESPONSES
from sos.server.visibility import can_read
from sos.store.secrets import SecretTable

__all__ = ["router"]

router = APIRouter(tags=["secrets"], responses=ERROR_RESPONSES)

DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
TeamName = Annotated[str, Path(max_length=63)]
SecretName = Annotated[str, Path(max_length=63)]


def _named(team: str, name: str | None = None) -> None:
    """A clear 422 for a team or secret name that cannot be one (not a bare regex)."""
    for what, value in (("team", team), ("secret name", name)):
        if value is not None and not DNS_LABEL.fullmatch(value):
            raise ValidationError(
                f"{what} {value!r} must be lowercase letters, digits and '-', starting with a "
                "letter and not ending with '-' (like db-password), at most 63 characters",
                details={"field": "team" if what == "team" else "name"},
            )


def _secrets(request: Request) -> SecretTable:
    table: SecretTable = request.app.state.sos.secrets
    return table


@router.put(
    "/teams/{team}/secrets/{name}",
    summary="Create or rotate a secret of a team (its value is never shown again)",
    responses={201: {"model": Secret, "description": "Created"}},
)
def set_secret(
    request: Request,
    response: Response,
    token: Principal,
    team: TeamName,
    name: SecretName,
    body: SecretValue,
) -> Secret:
    _named(team, name)
    can_write(token, team, f"secret {name!r}")
    secret, created = _secrets(request).set(team, name, body.value, token.name)
    if created:
        response.status_code = status.HTTP_201_CREATED
    control: ControlPlane = request.app.state.sos.control
    control.secret_changed(team, name)
    return secret


@router.get("/teams/{team}/secrets", summary="A team's secrets (names and versions, no values)")
def list_secrets(request: Request, token: Principal, team: TeamName) -> list[Secret]:
    _named(team)
    can_read(token, team, "the secrets")
    return _secrets(request).of_team(team)


@router.delete(
    "/teams/{team}/secrets/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a secret no serving revision uses",
)
def delete_secret(request: Request, token: Principal, team: TeamName, name: SecretName) -> Response:
    _named(team, name)
    can_write(token, team, f"secret {name!r}")
    control: ControlPlane = request.app.state.sos.control
    users = control.secret_users(team, name)
    if users:
        raise ConflictError(
            f"secret {name!r} of team {team!r} is used by {', '.join(users)}, which serve "
            "traffic or carry a tag: move them to a revision that does not use it first",
            details={"team": team, "secret": name, "revisions": users},
        )
    _secrets(request).delete(team, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
