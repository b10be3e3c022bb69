"""Serves the UI: ``/ui/`` (the page), ``/ui/assets/<build>/<file>``, and ``/`` -> ``/ui/``.

Caching: the page is ``no-cache`` (revalidated with its ETag on every load, so a new server
version shows at once); assets under the current build id are ``immutable`` for a year;
an asset asked for under another build id (a tab left open across an upgrade) is served
as it is now, ``no-cache``. Every answer carries a strict Content-Security-Policy: the
page runs only its own scripts and talks only to its own server.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from sos.errors import NotFoundError
from sos.ui.assets import Asset, load_assets

__all__ = ["SECURITY_HEADERS", "router"]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

router = APIRouter(include_in_schema=False)


def _fresh(request: Request, asset: Asset) -> bool:
    header = request.headers.get("if-none-match", "")
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return asset.etag in tags or "*" in tags


def _serve(request: Request, asset: Asset, cache_control: str) -> Response:
    headers = {"ETag": asset.etag, "Cache-Control": cache_control, **SECURITY_HEADERS}
    if _fresh(request, asset):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else asset.body
    headers["Content-Length"] = str(len(asset.body))
    return Response(body, media_type=asset.content_type, headers=headers)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
def ui_no_slash() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=308)


@router.api_route("/ui/", methods=["GET", "HEAD"])
def page(request: Request) -> Response:
    return _serve(request, load_assets().index, REVALIDATE)


@router.api_route("/ui/assets/{build}/{name}", methods=["GET", "HEAD"])
def asset(request: Request, build: str, name: str) -> Response:
    assets = load_assets()
    found = assets.files.get(name)
    if found is None:
        raise NotFoundError(
            f"the web UI has no file {name!r}; reload /ui/ (the server may have been upgraded)"
        )
    return _serve(request, found, IMMUTABLE if build == assets.build else REVALIDATE)
