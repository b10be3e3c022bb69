"""HTTP for source operators: httpx clients that carry the trace and respect the deadline.

>>> import flight.http
>>> class Trending(fo.SourceOperator):
...     async def __call__(self, user_id: int) -> fo.Source:
...         response = await flight.http.get(f"{TRENDING_URL}/trending", params={"u": user_id})
...         response.raise_for_status()
...         return fo.Source(pd.DataFrame(response.json()["items"]))

Every request made through these clients

- carries the W3C ``traceparent`` of the operator calling it (so the service you call joins
  the same trace) and, when tracing is on, gets its own client span;
- has its timeouts bounded by what is left of the request deadline (:mod:`flight.deadline`),
  so a slow service cannot hold the answer past its budget, and tells the service it calls
  what is left (``X-Flight-Budget-Ms``: another Flight service takes it as its own budget).

Use :func:`get`/:func:`post`/:func:`request` (one shared connection pool per event loop), or
make your own :class:`AsyncClient` (or :class:`Client`, for sync sources, which run in a
worker thread) with any httpx options.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import httpx

from flight import tracing
from flight.deadline import time_left

__all__ = ["AsyncClient", "Client", "aclose", "client", "get", "post", "request"]

_MIN_TIMEOUT = 0.001
BUDGET_HEADER = "X-Flight-Budget-Ms"


def _bound_timeout(request: httpx.Request) -> None:
    left = time_left()
    if left is None:
        return
    left = max(left, _MIN_TIMEOUT)
    request.headers.setdefault(BUDGET_HEADER, f"{left * 1000:.0f}" if left >= 0.01 else "1")
    current = request.extensions.get("timeout") or {}
    request.extensions["timeout"] = {
        phase: left if current.get(phase) is None else min(current[phase], left)
        for phase in ("connect", "read", "write", "pool")
    }


class AsyncClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` that propagates the trace and honours the request deadline."""

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        _bound_timeout(request)
        with tracing.client_span(request.method, str(request.url), request.headers) as span:
            response = await super().send(request, **kwargs)
            span.set("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.fail(f"HTTP {response.status_code}")
            return response


class Client(httpx.Client):
    """``httpx.Client`` (sync) that propagates the trace and honours the request deadline."""

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        _bound_timeout(request)
        with tracing.client_span(request.method, str(request.url), request.headers) as span:
            response = super().send(request, **kwargs)
            span.set("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.fail(f"HTTP {response.status_code}")
            return response


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def client() -> AsyncClient:
    """The shared :class:`AsyncClient` of the running event loop (10 s default timeout)."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None or found.is_closed:
        found = AsyncClient(timeout=10.0)
        _clients[loop] = found
    return found


async def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request on the shared client; ``kwargs`` as for ``httpx.AsyncClient.request``."""
    return await client().request(method, url, **kwargs)


async def get(url: str, **kwargs: Any) -> httpx.Response:
    return await client().get(url, **kwargs)


async def post(url: str, **kwargs: Any) -> httpx.Response:
    return await client().post(url, **kwargs)


async def aclose() -> None:
    """Close the shared client of the running loop (servers call this on shutdown)."""
    found = _clients.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()
