"""The debug explorer: a web page at ``GET /explorer/`` (its assets under
``/explorer/assets``) that runs an app's pipelines with debug output."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

__all__ = ["add_explorer_routes"]


def add_explorer_routes(asgi: FastAPI) -> None:
    """Serve the explorer page and its assets on ``asgi``."""
    assets = resources.files("flight.serving") / "explorer"
    asgi.add_api_route("/explorer", _explorer_redirect, methods=["GET"], include_in_schema=False)
    asgi.add_api_route("/explorer/", _explorer_page, methods=["GET"], include_in_schema=False)
    asgi.mount(
        "/explorer/assets",
        StaticFiles(directory=str(Path(str(assets)))),
        name="flight-explorer-assets",
    )


async def _explorer_redirect(request: Request) -> Response:
    return RedirectResponse(str(request.url.replace(path=request.url.path + "/")), 308)


async def _explorer_page(request: Request) -> Response:
    page = (resources.files("flight.serving") / "explorer" / "index.html").read_bytes()
    return Response(page, media_type="text/html; charset=utf-8")
