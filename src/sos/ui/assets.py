"""The UI's files, read once from the package and versioned by their content.

Every file under ``static/`` gets a content type and an ETag. The whole set gets a *build*
id (a hash of every file), which the page uses in its asset URLs
(``/ui/assets/<build>/app.js``): a URL with the current build never changes meaning, so
browsers may cache it for a year, and relative imports between the JavaScript modules stay
inside the same build. ``index.html`` names the build through the ``{{build}}``
placeholder, filled in here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["CONTENT_TYPES", "Asset", "Assets", "load_assets"]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True)
class Assets:
    build: str
    index: Asset
    files: dict[str, Asset]


def _asset(name: str, body: bytes) -> Asset:
    suffix = name[name.rfind(".") :]
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(name, body, CONTENT_TYPES.get(suffix, "application/octet-stream"), etag)


@cache
def load_assets() -> Assets:
    """Read ``sos/ui/static`` once per process."""
    folder = resources.files("sos.ui") / "static"
    raw = {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and not entry.name.startswith(".")
    }
    digest = hashlib.sha256()
    for name in sorted(raw):
        digest.update(name.encode() + b"\0" + raw[name] + b"\0")
    build = digest.hexdigest()[:12]
    index = raw.pop("index.html").replace(b"{{build}}", build.encode())
    files = {name: _asset(name, body) for name, body in raw.items()}
    return Assets(build=build, index=_asset("index.html", index), files=files)
