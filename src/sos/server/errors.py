"""Every error the API returns has one JSON shape: ``{"error": {"type", "message", "details"}}``.

``SOSError`` subclasses map to their status; request validation errors become a 422 that
names the field; unknown paths and methods keep their 404/405; anything unexpected is logged
with its traceback and answered with a 500 in the same shape (never a stack trace), except
when the server's storage refused a write (a full disk, a read-only data dir): that is a 503
saying so, and the transaction or upload it was part of left nothing behind.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sos.errors import (
    AuthenticationError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ServerError,
    ServerUnavailableError,
    SOSError,
    ValidationError,
)

__all__ = [
    "BINARY_BODY",
    "ERROR_RESPONSES",
    "ErrorBody",
    "ErrorDetail",
    "install_error_handlers",
    "storage_problem",
]

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    type: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """The one error shape of the SOS API."""

    error: ErrorDetail


#: ``openapi_extra`` of a route whose body is raw bytes (an upload streamed to disk)
BINARY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or a token the server does not know"},
    403: {"model": ErrorBody, "description": "The token may not do this"},
    404: {"model": ErrorBody, "description": "No such service, revision or token"},
    409: {"model": ErrorBody, "description": "Stale resource_version or existing name"},
    413: {
        "model": ErrorBody,
        "description": "The body is over the server's limit (SOS_MAX_REQUEST_BYTES, 1 MiB)",
    },
    422: {"model": ErrorBody, "description": "The request broke a rule; the message says which"},
}


def _where(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def _message(error: dict[str, Any]) -> str:
    msg = str(error.get("msg", "is invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def _line(error: dict[str, Any]) -> str:
    loc = error.get("loc", ())
    if error.get("type") == "json_invalid":  # loc is ("body", <character position>)
        why = (error.get("ctx") or {}).get("error") or "it does not parse"
        at = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        return f"the body is not valid JSON ({why}{at}); send a JSON object"
    return f"{_where(loc)}: {_message(error)}"


def validation_error(exc: RequestValidationError) -> ValidationError:
    errors = list(exc.errors())
    lines = [_line(e) for e in errors]
    message = "; ".join(lines[:5]) + (f" (and {len(lines) - 5} more)" if len(lines) > 5 else "")
    fields = [
        {"field": _where(e.get("loc", ())), "message": _message(e), "type": e.get("type")}
        for e in errors
    ]
    return ValidationError(message or "the request is invalid", details={"errors": fields})


_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
#: what SQLite and its drivers say when the file system refuses a write
_STORAGE_MESSAGES = (
    "database or disk is full",
    "attempt to write a readonly database",
    "disk i/o error",
    "no space left on device",
    "read-only file system",
)


def storage_problem(exc: BaseException) -> str | None:
    """Why the server's storage refused a write, when that is what ``exc`` (or an exception
    it came from) is: a full disk, a quota, a read-only file system. None otherwise."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _STORAGE_ERRNOS:
            return os.strerror(current.errno).lower()
        text = str(current).lower()
        for message in _STORAGE_MESSAGES:
            if message in text:
                return message
        current = current.__cause__ or current.__context__
    return None


def _response(error: SOSError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, AuthenticationError) else None
    return JSONResponse(error.to_payload(), status_code=error.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SOSError)
    async def _sos(request: Request, exc: SOSError) -> JSONResponse:
        if exc.status_code >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        return _response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _response(validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error: SOSError
        if exc.status_code == 404:
            error = NotFoundError(f"no such endpoint: {request.method} {request.url.path}")
        elif exc.status_code == 405:
            error = ValidationError(
                f"{request.method} is not allowed on {request.url.path}"
                + (" (revisions are immutable)" if "/revisions/" in request.url.path else "")
            )
            response = _response(error)
            response.status_code = 405
            if exc.headers:
                response.headers.update(exc.headers)
            return response
        elif exc.status_code == 400:
            error = ValidationError(
                f"the request could not be read ({exc.detail}); send a JSON body in UTF-8"
            )
        elif exc.status_code == 401:
            error = AuthenticationError(str(exc.detail))
        elif exc.status_code == 403:
            error = PermissionDeniedError(str(exc.detail))
        elif exc.status_code == 413:
            error = PayloadTooLargeError(str(exc.detail))
        elif exc.status_code < 500:
            error = ValidationError(str(exc.detail))
            response = _response(error)
            response.status_code = exc.status_code
            return response
        else:
            error = ServerError(str(exc.detail))
        return _response(error)

    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        # OSError and SQL errors land here rather than in the catch-all below (after which
        # Starlette re-raises and the server logs a traceback): a full disk is not a bug
        problem = storage_problem(exc)
        if problem is None:
            return await _unexpected(request, exc)
        log.error(
            "%s %s: the data dir refused a write (%s)", request.method, request.url.path, problem
        )
        return _response(
            ServerUnavailableError(
                f"the server cannot store anything right now ({problem}), so nothing was "
                "changed; free space on the server's data dir (or make it writable) and retry",
                details={"storage": problem},
            )
        )

    app.add_exception_handler(OSError, _storage)
    app.add_exception_handler(DBAPIError, _storage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _response(
            ServerError(
                f"the server failed unexpectedly on {request.method} {request.url.path} "
                f"({type(exc).__name__}); this is a bug: the server log has the details"
            )
        )
