"""`sos server` serves the web UI at /ui/: the page and every file it loads, with the
right content types, caching (page revalidated, versioned assets immutable), ETags and a
strict Content-Security-Policy; no token needed for the files themselves."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from sos_server import RunningServer

TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, follow_redirects=False) as client:
        yield client


def test_root_and_ui_without_slash_redirect_to_the_ui(http: httpx.Client) -> None:
    root = http.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    bare = http.get("/ui")
    assert bare.status_code == 308 and bare.headers["location"] == "/ui/"


def test_page_is_html_revalidated_and_locked_down(http: httpx.Client) -> None:
    page = http.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["x-content-type-options"] == "nosniff"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "{{build}}" not in page.text
    assert '<main id="main"' in page.text
    again = http.get("/ui/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_every_asset_the_page_loads_is_served_immutable_with_its_type(
    http: httpx.Client,
) -> None:
    page = http.get("/ui/").text
    linked = re.findall(r'(?:href|src)="(assets/[0-9a-f]{12}/[^"]+)"', page)
    assert {path.rsplit("/", 1)[1] for path in linked} >= {"app.js", "style.css", "favicon.svg"}
    build = linked[0].split("/")[1]
    seen: set[str] = set()
    todo = [path.rsplit("/", 1)[1] for path in linked]
    while todo:  # follow the JavaScript module imports too
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        response = http.get(f"/ui/assets/{build}/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == TYPES[name[name.rfind(".") :]], name
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["etag"]
        if name.endswith(".js"):
            # static imports, and the modules pages load on first use (import("./x.js"))
            todo += re.findall(r'(?:from |import\()"\./([\w-]+\.js)"', response.text)
    assert {
        "api.js", "dom.js", "charts.js", "traffic.js", "service.js", "forms.js",
        "service_forms.js", "revision_form.js", "tokens.js",
    } <= seen  # fmt: skip


def test_asset_of_another_build_is_served_but_revalidated(http: httpx.Client) -> None:
    old = http.get("/ui/assets/000000000000/app.js")
    assert old.status_code == 200
    assert old.headers["cache-control"] == "no-cache"
    head = http.head("/ui/assets/000000000000/style.css")
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/css")


def test_unknown_asset_is_a_json_404_that_says_what_to_do(http: httpx.Client) -> None:
    missing = http.get("/ui/assets/000000000000/nope.js")
    assert missing.status_code == 404
    assert "reload /ui/" in missing.json()["error"]["message"]
    assert http.get("/ui/assets/000000000000/..%2fapi.py").status_code == 404
