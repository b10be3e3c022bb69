"""How fast is the SOS API? Latency and throughput of its main calls over real HTTP.

Starts ``sos server`` (fake backend, SQLite by default or ``--database-url``) as a
subprocess on a free port, then measures with the real ``sos.Client``:

- ``GET /healthz``: the baseline, no token and no SQL (FastAPI + uvicorn alone);
- reads: whoami (token lookup), get service, list revisions;
- writes: set traffic (compare-and-swap + history row), create revision (the artifact is
  resolved in the server's artifact store);
- the same reads from 8 client threads at once.

Prints per call: requests/s, p50 and p99 in ms, and the ratio of p50 to the baseline
measured in the same run. Run: ``.venv/bin/python benchmarks/sos_api.py [-n 300]``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

from sos import Artifact, ArtifactMetadata, Client, Revision, Service
from sos.artifacts import file_digest


def start_server(data_dir: Path, database_url: str | None) -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, "-c", "from sos.cli import main; main()", "server", "--port", "0",
            "--data-dir", str(data_dir), "--backend", "fake", "--log-level", "warning"]  # fmt: skip
    if database_url:
        argv += ["--database-url", database_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOS_")}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            url = match[1]
            break
    else:
        raise SystemExit("the server did not start")
    for _ in range(200):
        try:
            httpx.get(f"{url}/api/v1/healthz").raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit("the server did not answer")


def measure(n: int, call: Callable[[int], object], threads: int = 1) -> tuple[float, float, float]:
    """(requests per second, p50 ms, p99 ms) of ``n`` calls, on ``threads`` threads."""
    for i in range(min(20, n)):  # warm up
        call(i)
    latencies: list[float] = []

    def one(i: int) -> None:
        start = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    if threads == 1:
        for i in range(n):
            one(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return n / elapsed, statistics.median(latencies) * 1000, p99 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="requests per measurement")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp), args.database_url)
        try:
            token = (Path(tmp) / "admin-token").read_text().strip()
            client = Client(url, token)
            svc = "bench-service"
            client.apply(Service(name=svc, team="bench"))
            path = Path(tmp) / "bench-1.js"  # the server resolves artifacts: push one first
            path.write_text("// bench\n")
            client.push_artifact(
                path,
                metadata=ArtifactMetadata(
                    name="bench", version="1", language="node", runtime_version="20",
                    entry_point="bench-1.js", digest=file_digest(path),
                    size=path.stat().st_size, created_by="bench", created_at=datetime.now(UTC),
                ),
            )  # fmt: skip
            spec = Revision(artifact=Artifact(name="bench", version="1"))
            client.create_revision(svc, spec)
            client.create_revision(svc, spec)
            raw = httpx.Client(base_url=url)
            cases: list[tuple[str, Callable[[int], object], int]] = [
                ("GET healthz (baseline)", lambda i: raw.get("/api/v1/healthz"), 1),
                ("GET whoami", lambda i: client.whoami(), 1),
                ("GET service", lambda i: client.get_service(svc), 1),
                ("GET revisions (2+)", lambda i: client.list_revisions(svc), 1),
                ("PUT traffic", lambda i: client.set_traffic(svc, {1 + i % 2: 100}), 1),
                ("POST revision", lambda i: client.create_revision(svc, spec), 1),
                ("GET service x8 threads", lambda i: client.get_service(svc), 8),
                ("PUT traffic x8 threads", lambda i: client.set_traffic(svc, {1 + i % 2: 100}), 8),
            ]
            db = args.database_url.split("://")[0] if args.database_url else "sqlite"
            print(f"SOS API over HTTP, {args.n} requests each, database {db}, fake backend")
            print(f"{'call':<26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p50 vs baseline':>17}")
            baseline = None
            for name, call, threads in cases:
                rate, p50, p99 = measure(args.n, call, threads)
                baseline = baseline or p50
                print(f"{name:<26}{rate:>9.0f}{p50:>9.2f}{p99:>9.2f}{p50 / baseline:>16.1f}x")
            client.close()
            raw.close()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
