"""Split accuracy of the router: 10,000 requests at 70/30 over two real instances.

    .venv/bin/python benchmarks/runtime_split.py [--requests 10000] [--concurrency 16]
        [--router python|haproxy|both]

Counts the ``Sos-Revision`` header of every answer (16 concurrent keep-alive clients) and
prints each revision's share overall, over the first 100 answers, and over 10 requests
sent one by one before (low volume). Goal: each
share within 1 percentage point of the route. The smooth weighted round-robin is exact
over every 10 consecutive picks at 70/30, so the expected error is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import zipapp
from collections import Counter
from pathlib import Path

import httpx
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))  # the tests' helpers

from sos_runtime import App  # noqa: E402

from sos.runtime.local.ingress import (  # noqa: E402
    Endpoint,
    RevisionTarget,
    RoutingTable,
    ServiceRoute,
    create_ingress,
)

SPLIT = {"shop-00001": 70, "shop-00002": 30}


async def run(requests: int, concurrency: int, artifact: Path, data_path: str) -> None:
    apps = {revision: App(artifact, revision) for revision in SPLIT}
    router = create_ingress(data_path, port=0)
    await router.start()
    router.update(
        RoutingTable(
            [ServiceRoute("shop", tuple(SPLIT.items()))],
            [
                RevisionTarget(rev, "shop", (Endpoint(f"{rev}-a", rev, app.port),))
                for rev, app in apps.items()
            ],
        )
    )
    await router.settle()
    order: list[str] = []
    url = f"http://127.0.0.1:{router.port}/"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    try:
        async with httpx.AsyncClient(headers={"Host": "shop.localhost"}, limits=limits) as client:
            low = [(await client.get(url)).headers["sos-revision"] for _ in range(10)]
            remaining = iter(range(requests))

            async def worker() -> None:
                for _ in remaining:
                    response = await client.get(url)
                    order.append(response.headers["sos-revision"])

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
    finally:
        await router.close()
        for app in apps.values():
            app.stop()
    print(
        f"data path {data_path}: {len(order)} requests in {elapsed:.1f}s "
        f"({len(order) / elapsed:.0f} req/s)"
    )
    worst = 0.0
    windows = (("10 one by one", low), ("first 100", order[:100]), ("all", order))
    for label, window in windows:
        counts = Counter(window)
        shares = {rev: 100 * counts[rev] / len(window) for rev in SPLIT}
        errors = {rev: shares[rev] - pct for rev, pct in SPLIT.items()}
        if label == "all":
            worst = max(abs(e) for e in errors.values())
        text = "  ".join(f"{rev} {shares[rev]:5.1f}% ({errors[rev]:+.1f})" for rev in SPLIT)
        print(f"  {label:13} {text}")
    print(f"largest deviation over all requests: {worst:.2f} points (goal <= 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--router", choices=["python", "haproxy", "both"], default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "hello.pyz"
        zipapp.create_archive(ROOT / "tests" / "sos" / "runtime" / "apps" / "hello", artifact)
        for data_path in ("python", "haproxy") if args.router == "both" else (args.router,):
            if data_path == "haproxy" and not shutil.which("haproxy"):
                print("data path haproxy: skipped (HAProxy is not installed)")
                continue
            uvloop.run(run(args.requests, args.concurrency, artifact, data_path))


if __name__ == "__main__":
    main()
