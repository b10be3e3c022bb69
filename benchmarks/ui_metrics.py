"""What does the web UI cost the server? The metrics API, the sampler, and the page weight.

Runs the SOS API server in this process (uvicorn on a free port of 127.0.0.1) with a
synthetic backend of ``--services`` services x ``--revisions`` revisions whose counters
grow every round, fills the metrics ring of one service to its full 15 minutes (452
samples, as a server that has run for 15 minutes at the default 2 s holds), then measures
over real HTTP with httpx:

- ``GET /api/v1/services/{name}``: the baseline, one SQL read (what every page does);
- ``GET .../metrics?window=5m&revision=...`` (and 15m): what the charts poll every 2 s
  (one revision); and 15m of every revision at once, for scale;
- one sampling round over every service (in process), the cost the server pays every 2 s
  whether or not anyone looks.

Also prints the bytes a first visit downloads (raw and gzip-compressed) and, when Debian's
Chromium is installed, the time from navigation to a drawn services table (median of 5).
Run: ``.venv/bin/python benchmarks/ui_metrics.py [-n 300]``. Figures on a shared machine
are noisy; compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn

from sos.config import ServerSettings
from sos.models import Instances, RevisionSpec, ServiceSpec
from sos.runtime.base import RevisionMetricsSample
from sos.runtime.fake import FakeBackend
from sos.server.app import ServerState, create_app
from sos.server.metrics import MetricsSampler
from sos.ui import Asset, Assets, load_assets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from headless_browser import launch, missing  # the tests' Chromium and its flags

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))


class Synthetic(FakeBackend):
    """Every revision answers ~40 requests per round with a plausible latency spread."""

    name = "synthetic"

    def __init__(self, services: int, revisions: int) -> None:
        super().__init__()
        self.names = [f"svc-{i:03d}" for i in range(services)]
        self.revisions = revisions
        self.round = 0

    async def list_services(self) -> list[str]:
        self.round += 1
        return self.names

    async def metrics(self, service: str) -> list[RevisionMetricsSample]:
        n = self.round
        spread = (0, 2, 10, 15, 8, 4, 1, 0, 0, 0, 0, 0)
        cumulative, total = [], 0
        for bound, share in zip(BOUNDS, spread, strict=True):
            total += share * n
            cumulative.append((bound, total))
        return [
            RevisionMetricsSample(
                revision=f"{service}-{r:05d}",
                requests=total,
                errors=n // 10,
                latency_buckets=tuple(cumulative),
                latency_sum_seconds=0.03 * total,
                in_flight=2,
                instances=Instances(wanted=2, running=2, ready=2),
            )
            for r in range(1, self.revisions + 1)
        ]


def measure(n: int, call: Callable[[], object]) -> tuple[float, float, float]:
    """(calls per second, p50 ms, p99 ms)."""
    for _ in range(min(20, n)):
        call()
    times = []
    began = time.perf_counter()
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    elapsed = time.perf_counter() - began
    times.sort()
    return n / elapsed, times[len(times) // 2] * 1000, times[int(len(times) * 0.99) - 1] * 1000


def serve(state: ServerState) -> tuple[uvicorn.Server, str]:
    app = create_app(state=state)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}"


def first_visit(assets: Assets) -> list[Asset]:
    """The page, what it links, and the JavaScript modules those import statically
    (``import("./x.js")`` loads a module on first use instead)."""
    todo = re.findall(r'assets/[0-9a-f]+/([\w.-]+)"', assets.index.body.decode())
    seen: dict[str, Asset] = {}
    while todo:
        name = todo.pop()
        if name in seen or name not in assets.files:
            continue
        seen[name] = assets.files[name]
        if name.endswith(".js"):
            todo += re.findall(r'from "\./([\w-]+\.js)"', seen[name].body.decode())
    return [assets.index, *seen.values()]


def weight(files: list[Asset]) -> str:
    raw = sum(len(a.body) for a in files)
    packed = sum(len(gzip.compress(a.body)) for a in files)
    return f"{raw / 1024:.0f} KiB ({packed / 1024:.0f} KiB gzip)"


def page_load(url: str, token: str) -> float | None:
    if missing() is not None:
        return None
    from playwright.sync_api import sync_playwright

    loads = []
    with sync_playwright() as p:
        browser = launch(p)
        for _ in range(5):
            context = browser.new_context()
            context.add_init_script(f"sessionStorage.setItem('sos.token', {token!r})")
            page = context.new_page()
            start = time.perf_counter()
            page.goto(f"{url}/ui/")
            page.wait_for_selector("tr[data-service]")
            loads.append((time.perf_counter() - start) * 1000)
            context.close()
        browser.close()
    return statistics.median(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="requests per measurement")
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--revisions", type=int, default=5)
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="sos-ui-bench-"))
    backend = Synthetic(args.services, args.revisions)
    settings = ServerSettings(data_dir=data, backend="fake", admin_token="bench-admin-token-0123")
    state = ServerState.open(settings, backend=backend)
    server, url = serve(state)
    token = settings.admin_token or ""
    headers = {"Authorization": f"Bearer {token}"}
    service = backend.names[0]
    with httpx.Client(base_url=url, headers=headers) as http:
        http.put(
            f"/api/v1/services/{service}",
            json=ServiceSpec(name=service, team="bench").model_dump(mode="json"),
        ).raise_for_status()
        spec = RevisionSpec.model_validate({"artifact": {"name": "a", "version": "1"}})
        http.post(
            f"/api/v1/services/{service}/revisions", json=spec.model_dump(mode="json")
        ).raise_for_status()

        # a sampler of our own, filled as if the server had sampled for 15 minutes
        clock = [time.time() - 904.0]
        sampler = MetricsSampler(backend, clock=lambda: clock[0])

        async def fill() -> float:
            rounds = int(sampler.retention / sampler.interval) + 2
            began = time.perf_counter()
            for _ in range(rounds):
                await sampler.sample_once()
                clock[0] += sampler.interval
            return (time.perf_counter() - began) / rounds * 1000

        per_round = asyncio.run(fill())
        sampler.clock = time.time
        state.extra["metrics"] = sampler
        ring = len(sampler.rings[service])

        metrics = f"/api/v1/services/{service}/metrics"
        one = f"&revision={service}-00001"
        rows = [
            ("GET service (baseline)", f"/api/v1/services/{service}"),
            ("metrics 5m, 1 revision", f"{metrics}?window=5m{one}"),
            ("metrics 15m, 1 revision", f"{metrics}?window=15m{one}"),
            (f"metrics 15m, {args.revisions} revisions", f"{metrics}?window=15m"),
        ]
        body = http.get(f"/api/v1/services/{service}/metrics?window=15m")
        points = sum(len(r["points"]) for r in body.json()["revisions"])
        print(
            f"ring: {ring} samples of {args.revisions} revisions; a 15 min answer holds "
            f"{points} points, {len(body.content) / 1024:.0f} KiB of JSON"
        )
        print(
            f"sampling round over {args.services} services x {args.revisions} revisions: "
            f"{per_round:.2f} ms every 2 s ({per_round / 20:.2f}% of one core)"
        )
        print(f"{'call':<30}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p50 / baseline':>16}")
        baseline = None
        for name, path in rows:
            rps, p50, p99 = measure(args.n, lambda path=path: http.get(path).raise_for_status())
            baseline = baseline or p50
            print(f"{name:<30}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}{p50 / baseline:>15.2f}x")

    assets = load_assets()
    first = first_visit(assets)
    later = [a for a in assets.files.values() if a not in first]
    print(f"first visit downloads {len(first)} files: {weight(first)}")
    print(f"loaded on first use (forms, tokens): {len(later)} files: {weight(later)}")
    median = page_load(url, token)
    if median is not None:
        print(f"navigation to a drawn services table in Chromium: {median:.0f} ms (median of 5)")
    print("(figures from a shared 2-core machine are noisy; compare the ratios)")
    server.should_exit = True


if __name__ == "__main__":
    main()
