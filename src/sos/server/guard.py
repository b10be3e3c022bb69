"""No work before the token is checked, and no unbounded bodies (an ASGI middleware).

A request to the API that carries a body is answered 401 before a byte of it is read when
it has no valid token (a 300 MiB body to an unauthenticated request once was read and
parsed first). JSON bodies are capped (``SOS_MAX_REQUEST_BYTES``, default 1 MiB): a larger
Content-Length is a 413 at once, and a chunked body is cut off with a 413 as soon as it
passes the cap. Artifact uploads have their own, larger limit
(``SOS_MAX_ARTIFACT_BYTES``, streamed to disk by the artifact routes), and so do the
sources of remote builds (``SOS_MAX_SOURCE_BYTES``, ``sos.server.builds``). A remote
build's builder uploads its artifact with the build's own key (``key_ok``), not a token.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.responses import JSONResponse

from sos.errors import AuthenticationError, PayloadTooLargeError, SOSError, ValidationError

__all__ = ["RequestGuard", "max_request_bytes"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ARTIFACT_UPLOAD = re.compile(r"^/api/v1/artifacts/[^/]+/[^/]+$")
_SOURCE_UPLOAD = "/api/v1/builds"
DEFAULT_MAX_REQUEST_BYTES = 1 << 20


def max_request_bytes(env: MutableMapping[str, str] | None = None) -> int:
    raw = (os.environ if env is None else env).get("SOS_MAX_REQUEST_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_REQUEST_BYTES
    if not raw.isdigit() or int(raw) <= 0:
        raise ValidationError(f"SOS_MAX_REQUEST_BYTES={raw!r} must be a positive number of bytes")
    return int(raw)


class RequestGuard:
    """Checks the token of API requests with a body before reading it, and caps the body."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token_ok: Callable[[str], bool],
        max_bytes: int,
        key_ok: Callable[[str, str, str], bool] = lambda method, path, secret: False,
    ) -> None:
        self.app = app
        self.token_ok = token_ok
        self.key_ok = key_ok
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/api/"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length", "")
        has_body = (length.isdigit() and int(length) > 0) or "transfer-encoding" in headers
        if not has_body:
            await self.app(scope, receive, send)
            return
        auth = headers.get("authorization", "")
        secret = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not secret:
            await _answer(
                send,
                AuthenticationError(
                    "no token: send `Authorization: Bearer <token>` (set SOS_TOKEN or run "
                    "`sos login URL --token TOKEN`)"
                ),
            )
            return
        path, method = str(scope["path"]), str(scope["method"])
        # a plug-in's own key for this one request (a remote build's builder uploading its
        # artifact): the route streams it with its own limit
        if self.key_ok(method, path, secret):
            await self.app(scope, receive, send)
            return
        if not await asyncio.to_thread(self.token_ok, secret):
            await _answer(
                send,
                AuthenticationError(
                    "the server does not know this token (mistyped, or revoked): ask an admin "
                    "for a token with `sos token create`"
                ),
            )
            return
        if _ARTIFACT_UPLOAD.match(path) and method == "PUT":
            await self.app(scope, receive, send)  # its own limit, streamed to disk
            return
        if path == _SOURCE_UPLOAD and method == "POST":
            await self.app(scope, receive, send)  # remote builds' source: the same
            return
        if length.isdigit() and int(length) > self.max_bytes:
            await _answer(send, _too_large(int(length), self.max_bytes))
            return
        if length.isdigit():  # the server reads at most Content-Length bytes
            await self.app(scope, receive, send)
            return
        # chunked, no length given: read it here, up to the cap, then hand it on
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await _answer(send, _too_large(None, self.max_bytes))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _too_large(size: int | None, limit: int) -> PayloadTooLargeError:
    what = f"the body is {size} bytes" if size is not None else "the body is"
    return PayloadTooLargeError(
        f"{what} above the server's limit of {limit} bytes for API requests "
        f"(SOS_MAX_REQUEST_BYTES); artifacts go to PUT /api/v1/artifacts/NAME/VERSION"
    )


async def _answer(send: Send, error: SOSError) -> None:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, AuthenticationError) else {}
    response = JSONResponse(error.to_payload(), status_code=error.status_code, headers=headers)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
