"""Live charts and the logs tail with real numbers: `sos server --backend local` as a
process runs a real (stdlib) Python artifact behind its router; the test sends a known
number of requests and reads them back in the browser, and the same numbers through the
Python client (``Client.metrics``) and the CLI (``sos metrics``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipapp
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from sos_harness import APPS, TOKEN, ServerProcess, kill_instances, publish
from sos_ui import NARROW, NewPage, shot, sign_in

from sos.client import Client
from sos.models import RevisionSpec, ServiceSpec

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TO_REVISION_2 = 24  # 20 through the 50/50 split, 2 slow ones, /sick and a failing /live


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    """The runtime tests' small stdlib HTTP app, built into a zipapp artifact."""
    target = tmp_path / "hello.pyz"
    zipapp.create_archive(APPS / "hello", target, interpreter="/usr/bin/env python3")
    return target


@pytest.fixture
def live(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", 0, SOS_METRICS_INTERVAL="0.5")
    try:
        yield server
    finally:
        server.stop()
        print("".join(server.output))  # shown when the test failed
        kill_instances(tmp_path / "data")


def deploy_and_load(server: ServerProcess, hello: Path) -> None:
    with Client(server.url, TOKEN) as client:
        publish(client, hello, "hello-py", "python")  # what `sos push` does
        client.apply(ServiceSpec(name="shop", team="recs"))
        spec = {"artifact": {"name": "hello-py", "version": "v1"}, "autoscaling": {"min_scale": 1}}
        for number in (1, 2):
            client.create_revision("shop", RevisionSpec.model_validate(spec))
            client.wait_ready("shop", number, timeout=60)
        client.set_traffic("shop", {1: 50, 2: 50})
    router = f"http://127.0.0.1:{server.router_port}"
    with httpx.Client(base_url=router, timeout=30) as http:
        seen = [http.get("/", headers={"Host": "shop.localhost"}) for _ in range(40)]
        assert sorted({r.headers["sos-revision"] for r in seen}) == ["shop-00001", "shop-00002"]
        for _ in range(2):
            assert http.get("/r/shop-00002/slow?ms=300").status_code == 200
        assert http.get("/r/shop-00002/sick").status_code == 200
        assert http.get("/r/shop-00002/live").status_code == 500


def test_charts_and_logs_show_the_requests_that_were_sent(
    live: ServerProcess, hello: Path, page: Page, new_page: NewPage
) -> None:
    deploy_and_load(live, hello)
    sign_in(page, live.url, TOKEN)
    # a revision named by its number, as anywhere else (the app's own links use the id)
    page.goto(f"{live.url}/ui/#/services/shop/metrics?revision=2")
    expect(page.get_by_label("Revision")).to_have_value("shop-00002")
    tiles = page.locator(".tiles")
    expect(tiles).to_contain_text(f"{TO_REVISION_2} in 5 min", timeout=20_000)
    expect(tiles.locator(".tile", has_text="Errors")).to_contain_text("1")
    expect(tiles.locator(".tile", has_text="Errors")).to_contain_text("4.17% of requests")
    expect(tiles.locator(".tile", has_text="Instances")).to_contain_text("1 / 1")
    p99 = tiles.locator(".tile", has_text="p99 latency").locator(".tile-value").inner_text()
    # the two 300 ms answers are the slowest 8%: p99 lies in their bucket, 250..500 ms
    assert re.fullmatch(r"\d+ ms", p99) and 250 <= int(p99.split()[0]) <= 500, p99
    requests = page.get_by_role("img", name=re.compile("^Requests per second"))
    expect(requests).to_have_attribute("aria-label", re.compile(r"requests/s: latest [\d.]+, peak"))
    assert page.locator("figure[data-chart='Requests per second'] path.line").get_attribute("d")
    errors = page.get_by_role("img", name=re.compile("^Errors per second"))
    expect(errors).not_to_have_attribute("aria-label", re.compile("peak 0,|peak 0$|peak 0\\."))
    shot(page, "metrics-wide")

    # the same numbers in the other two faces
    with Client(live.url, TOKEN) as client:
        two = client.metrics("shop", revision=2).revision(2)
    assert two is not None and (two.requests, two.errors) == (TO_REVISION_2, 1)
    assert two.p99_ms is not None and 250 <= two.p99_ms <= 500
    assert two.instances is not None and (two.instances.running, two.instances.ready) == (1, 1)
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "sos"), "metrics", "shop", "--revision", "2"],
        env={**os.environ, "SOS_URL": live.url, "SOS_TOKEN": TOKEN, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    row = next(line.split() for line in cli.stdout.splitlines() if line.startswith("00002"))
    assert row[1] == "50%" and row[-4:] == [str(TO_REVISION_2), "1", "1", "1"], cli.stdout

    narrow = new_page(viewport=NARROW)
    sign_in(narrow, live.url, TOKEN)
    narrow.goto(f"{live.url}/ui/#/services/shop/metrics?revision=shop-00002")
    expect(narrow.locator(".tiles")).to_contain_text(f"{TO_REVISION_2} in 5 min", timeout=20_000)
    assert narrow.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    shot(narrow, "metrics-narrow")

    page.get_by_role("link", name="Logs").click()
    page.get_by_label("Revision").select_option("shop-00001")
    log = page.get_by_role("log", name="Log lines")
    # the tail (its last 200 lines: the probes log every second, so the start-up line may
    # have scrolled out on a slow machine) holds the revision's access lines
    expect(log).to_contain_text('access "GET / HTTP/1.1" 200', timeout=15_000)
    expect(page.get_by_label("Follow new lines")).to_be_checked()
    # following: a request made now shows up without reloading; one to revision 2 does not
    router = f"http://127.0.0.1:{live.router_port}"
    httpx.get(f"{router}/r/shop-00001/fresh-line", timeout=30)
    expect(log).to_contain_text("GET /fresh-line", timeout=15_000)
    httpx.get(f"{router}/r/shop-00002/other-revision", timeout=30)
    httpx.get(f"{router}/r/shop-00001/after-that", timeout=30)
    expect(log).to_contain_text("GET /after-that", timeout=15_000)
    expect(log).not_to_contain_text("other-revision")
    shot(page, "logs-wide")
