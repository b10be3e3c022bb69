"""Who may read what of a service: everyone sees that it exists and how it is set up; only
its own team's tokens (writers and readers) and admins see the values of its environment,
the content of its config files, its logs and its metrics. Other tokens see each variable's
name and each file's path with the value hidden (``redacted``)."""

from __future__ import annotations

from typing import Any

from sos.errors import PermissionDeniedError
from sos.models import ConfigFile, EnvVar, HistoryEntry, Revision, Service, Token

__all__ = ["can_read", "redact_history", "redact_revision", "redact_service", "sees_values"]


def sees_values(token: Token, team: str | None) -> bool:
    """Whether ``token`` may read the values of a service of ``team`` (None: the service is
    gone, and only admins read what it had)."""
    return token.role == "admin" or (team is not None and token.team == team)


def can_read(token: Token, team: str, what: str) -> None:
    """Raise unless ``token`` may read ``what`` (logs, metrics) of a service of ``team``."""
    if sees_values(token, team):
        return
    whose = f"team {token.team!r}" if token.team else "no team"
    raise PermissionDeniedError(
        f"token {token.name!r} ({whose}) cannot read {what}, which belong to team {team!r}: "
        "only that team's tokens and admins can",
        details={"role": token.role, "team": token.team, "owner": team},
    )


def _hidden(env: list[EnvVar]) -> list[EnvVar]:
    return [
        var if var.secret else var.model_copy(update={"value": "", "redacted": True}) for var in env
    ]


def _hidden_files(files: list[ConfigFile]) -> list[ConfigFile]:
    return [f.model_copy(update={"content": "", "redacted": True}) for f in files]


def redact_revision(revision: Revision) -> Revision:
    """``revision`` with every environment value and config file content hidden."""
    return revision.model_copy(
        update={"env_vars": _hidden(revision.env_vars), "files": _hidden_files(revision.files)}
    )


def redact_service(service: Service) -> Service:
    """``service`` with the values of its environment and its config files hidden."""
    return service.model_copy(
        update={"env_vars": _hidden(service.env_vars), "files": _hidden_files(service.files)}
    )


def _hide(document: dict[str, Any] | None) -> dict[str, Any] | None:
    if not document:
        return document
    hidden = dict(document)
    if isinstance(document.get("env_vars"), list):
        hidden["env_vars"] = [
            {**var, "value": "", "redacted": True}
            if isinstance(var, dict) and not var.get("secret")
            else var
            for var in document["env_vars"]
        ]
    if isinstance(document.get("files"), list):
        hidden["files"] = [
            {**f, "content": "", "redacted": True} if isinstance(f, dict) else f
            for f in document["files"]
        ]
    return hidden


def redact_history(entry: HistoryEntry) -> HistoryEntry:
    """``entry`` with the environment values in what it recorded hidden."""
    return entry.model_copy(update={"before": _hide(entry.before), "after": _hide(entry.after)})
