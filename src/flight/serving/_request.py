"""Reading and checking a request before it runs: its body (under a size limit), its JSON
context, the ``debug`` and ``budget_ms`` options (a debug trace only for callers allowed one)
and the 422 answer of a request that failed validation."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from flight._limits import load_json
from flight.serving._params import BUDGET_HEADER, Invalid, parse_budget, parse_debug
from flight.serving._respond import json_response, respond

__all__ = [
    "DEBUG_TOKEN_HEADER",
    "MAX_BODY_BYTES",
    "BodyTooLarge",
    "Call",
    "DebugRefused",
    "check_debug",
    "invalid_response",
    "json_object",
    "read_body",
    "request_options",
    "truthy",
]

DEBUG_TOKEN_HEADER = "Flight-Debug-Token"
#: request bodies above this are refused (413) before they are read whole
MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class Call:
    """A parsed request, ready to run."""

    run: Callable[[], Awaitable[Any]]
    debug: bool
    budget: float | None
    respond: Callable[[Any], Response] = respond


class BodyTooLarge(Exception):
    """A request body above the app's ``max_body_bytes`` (answered 413, never read whole)."""


class DebugRefused(Exception):
    """A caller asked for debug output on a service that does not give it to them."""


def truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read up to ``limit`` bytes: a larger one is refused by its
    Content-Length, or as soon as it passes the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(
            f"the body is {declared} bytes, above this service's limit of {limit} bytes "
            f"(FLIGHT_MAX_BODY_BYTES); a context is a small JSON object"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(
                f"the body is above this service's limit of {limit} bytes "
                f"(FLIGHT_MAX_BODY_BYTES); a context is a small JSON object"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def check_debug(request: Request, *, debug: bool, token: str | None) -> None:
    """Refuse a debug trace (:class:`DebugRefused`) unless the service gives it to every
    caller (``debug``) or the request carries the debug ``token``."""
    if debug:
        return
    given = request.headers.get(DEBUG_TOKEN_HEADER)
    if (
        token is not None
        and given is not None
        and secrets.compare_digest(given.encode(), token.encode())
    ):
        return
    raise DebugRefused(
        "debug output is off on this service (it lists every candidate id and internal "
        f"column): send the {DEBUG_TOKEN_HEADER} header with the value of FLIGHT_DEBUG_TOKEN, "
        "or run the service with FLIGHT_DEBUG=1 (App(debug=True), flight serve --debug) "
        "where every caller may see that"
    )


def request_options(
    request: Request,
    options: Mapping[str, Any],
    *,
    debug: bool,
    token: str | None,
    budget_ms: float | None,
) -> tuple[bool, float | None]:
    """The request's ``debug`` (checked: :func:`check_debug`) and its budget in seconds (the
    budget header, else ``budget_ms`` of the options, else the app's ``budget_ms``)."""
    wants_debug = parse_debug(options["debug"]) if "debug" in options else False
    if wants_debug:
        check_debug(request, debug=debug, token=token)
    budget = parse_budget(request.headers.get(BUDGET_HEADER), options.get("budget_ms"), budget_ms)
    return wants_debug, budget


def json_object(body: bytes) -> dict[str, Any]:
    """A body as a JSON object (an empty body: ``{}``); ``ValueError`` saying what it is."""
    if not body.strip():
        return {}
    try:
        data = load_json(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"must be a JSON object of context values, not {type(data).__name__}")
    return data


def invalid_response(request: Request, exc: Invalid) -> Response:
    """The 422 of a request that failed validation: each problem, and a hint."""
    body: dict[str, Any] = {
        "error": f"invalid request to {request.method} {request.url.path}: {exc}",
        "problems": [p.to_dict() for p in exc.problems],
    }
    if exc.hint:
        body["hint"] = exc.hint
    return json_response(body, 422)
