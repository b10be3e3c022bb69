"""What an app says about itself: ``GET /`` (its endpoints, pipelines and links),
``GET /healthz`` (liveness), ``GET /readyz`` (startup done, configs loaded) and
``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from flight.serving._respond import json_response

if TYPE_CHECKING:
    from flight.serving.app import App

__all__ = ["add_health_routes"]


def add_health_routes(
    asgi: FastAPI, app: App, *, endpoints: list[dict[str, Any]], explorer: bool
) -> None:
    """Serve ``app``'s index, health, readiness and metrics on ``asgi``; ``endpoints``: the
    app's endpoints as the index lists them (the list grows as endpoints are added)."""

    async def _index(request: Request) -> Response:
        return json_response(
            {
                "app": app.name,
                "ready": app.ready,
                "endpoints": endpoints,
                "pipelines": app.catalog.names(),
                "links": {
                    "pipelines": "/pipelines",
                    "explorer": "/explorer/" if explorer else None,
                    "metrics": "/metrics",
                    "docs": "/docs",
                    "health": "/healthz",
                    "ready": "/readyz",
                },
                "budget_ms": app.budget_ms,
            }
        )

    async def _healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def _readyz(request: Request) -> Response:
        entries = app.catalog.entries()
        ready = app.ready
        body = {
            "status": "ready" if ready else "starting",
            "pipelines": len([e for e in entries if e.pipeline is not None]),
            "rejected": [e.name for e in entries if e.error is not None],
        }
        return json_response(body, 200 if ready else 503)

    async def _metrics(request: Request) -> Response:
        content, media_type = app.metrics.exposition()
        return Response(content, media_type=media_type)

    add = asgi.add_api_route
    add("/", _index, methods=["GET"], include_in_schema=False)
    add("/healthz", _healthz, methods=["GET"], tags=["flight"])
    add("/readyz", _readyz, methods=["GET"], tags=["flight"])
    add("/metrics", _metrics, methods=["GET"], tags=["flight"])
