"""The one error family of SOS, shared by the client, the CLI and the API server.

::

    SOSError                       anything SOS reports to a user
    ├── ValidationError            the request was malformed or broke a rule (422)
    ├── AuthenticationError        no token, or a token the server does not know (401)
    ├── PermissionDeniedError      a valid token that may not do this (403)
    ├── NotFoundError              no such service, revision, artifact or token (404)
    ├── ConflictError              a stale resource version, an existing name, an immutable
    │                              artifact version with other bytes (409)
    ├── PayloadTooLargeError       an upload above the server's size limit (413)
    ├── BackendError               the runtime underneath refused or failed (502)
    ├── ServerUnavailableError     the server cannot be reached or is shutting down (503)
    ├── ServerError                anything else the server reports (500)
    └── NotReadyError              a revision did not become ready in time (client side)
        └── RevisionFailedError    a revision failed and will not become ready by waiting

The server turns an error into JSON ``{"error": {"type": ..., "message": ..., ...}}`` with
the status above; the client turns that JSON back into the same class, so
``except sos.ConflictError`` works the same on both sides of the wire.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "BackendError",
    "ConflictError",
    "NotFoundError",
    "NotReadyError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RevisionFailedError",
    "SOSError",
    "ServerError",
    "ServerUnavailableError",
    "ValidationError",
    "error_from_payload",
]


class SOSError(Exception):
    """Base of every error SOS raises to users.

    ``message`` says what was wrong, where, and what to do; ``details`` carries
    machine-readable context (for example the offending field for a validation error).
    """

    status_code: ClassVar[int] = 500
    type_name: ClassVar[str] = "error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type_name, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class ValidationError(SOSError):
    status_code = 422
    type_name = "validation_error"


class AuthenticationError(SOSError):
    status_code = 401
    type_name = "authentication_error"


class PermissionDeniedError(SOSError):
    status_code = 403
    type_name = "permission_denied"


class NotFoundError(SOSError):
    status_code = 404
    type_name = "not_found"


class ConflictError(SOSError):
    status_code = 409
    type_name = "conflict"


class PayloadTooLargeError(SOSError):
    status_code = 413
    type_name = "payload_too_large"


class BackendError(SOSError):
    status_code = 502
    type_name = "backend_error"


class ServerUnavailableError(SOSError):
    status_code = 503
    type_name = "unavailable"


class ServerError(SOSError):
    status_code = 500
    type_name = "server_error"


class NotReadyError(SOSError):
    """Raised by ``Client.wait_ready`` when a revision is not ready within the timeout."""

    status_code = 504
    type_name = "not_ready"


class RevisionFailedError(NotReadyError):
    """Raised by ``Client.wait_ready`` when the revision failed (crash loop, bad artifact)."""

    status_code = 502
    type_name = "revision_failed"


_BY_TYPE: dict[str, type[SOSError]] = {
    cls.type_name: cls
    for cls in (
        ValidationError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        PayloadTooLargeError,
        BackendError,
        ServerUnavailableError,
        ServerError,
    )
}
_BY_STATUS: dict[int, type[SOSError]] = {cls.status_code: cls for cls in _BY_TYPE.values()}


def error_from_payload(status_code: int, payload: Any) -> SOSError:
    """Rebuild the error a server sent (its JSON body and HTTP status) on the client side."""
    message = f"the server answered HTTP {status_code}"
    details: dict[str, Any] = {}
    type_name = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        body = payload["error"]
        message = str(body.get("message", message))
        type_name = body.get("type")
        raw = body.get("details")
        details = raw if isinstance(raw, dict) else {}
    elif isinstance(payload, dict) and "detail" in payload:  # a framework-level error
        message = str(payload["detail"])
    cls = _BY_TYPE.get(str(type_name)) or _BY_STATUS.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else ValidationError
    return cls(message, details=details)
