"""The served MovieLens example (Flight) against a hand-written FastAPI endpoint doing the
same pandas work, under the same load generator, in one run.

    .venv/bin/python benchmarks/flight_serving.py [--duration 10] [--connections 16] [--rounds 2]

Servers (each one uvicorn process, one worker, uvloop + httptools, no access log), all
answering ``GET /recs/for_user?user_id=U&version=v2`` for users 1..``--users`` in turn:

- ``hand-written``: ``benchmarks/flight_serving_handwritten.py`` (plain FastAPI + pandas);
- ``flight``: ``flight serve movielens_app:app`` with tracing on (every request, pipeline
  and operator span exported over OTLP/HTTP to a collector stand-in in this process) and
  metrics on, logs at warning: the goal is >= 0.9x the hand-written throughput;
- ``flight+logs``: the same with the per-operator JSON log lines at info (for reference);
- ``flight, 10% sampled``: tracing with ``OTEL_TRACES_SAMPLER=parentbased_traceidratio``
  at 0.1, what a busy service would run (for reference);
- ``flight, no tracing``: metrics only (for reference).

Both give the same items for every user (checked before timing). The load generator is wrk
(``--latency``, a Lua script rotating users); rounds interleave the servers so they see the
same machine noise. On a shared machine the figures are noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import http.server
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "movielens"
BIN = Path(sys.executable).parent
PATH = "/recs/for_user?user_id={user}&version=v2"
LUA = """
local i = 0
request = function()
  i = (i %% %(users)d) + 1
  return wrk.format("GET", "/recs/for_user?user_id=" .. i .. "&version=v2")
end
"""


class Collector(http.server.ThreadingHTTPServer):
    """Stands in for an OpenTelemetry collector: accepts OTLP/HTTP exports, counts spans."""

    daemon_threads = True

    def __init__(self) -> None:
        self.spans = 0
        self.exports = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _CollectorHandler)


class _CollectorHandler(http.server.BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        n = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with self.server.lock:
            self.server.spans += n
            self.server.exports += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **self.env, "PORT": str(self.port)}
        argv = [a.replace("{port}", str(self.port)) for a in self.argv]
        self.proc = subprocess.Popen(
            argv, cwd=self.cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self) -> None:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{self.name} exited:\n{self.log.read().decode()[-3000:]}")
            try:
                if httpx.get(self.url + PATH.format(user=1), timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.log is not None:
            self.log.close()


@dataclass
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def parse_wrk(out: str) -> Figures:
    def latency(pct: str) -> float:
        match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not match:
            raise RuntimeError(f"no {pct}% latency in wrk output:\n{out}")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000.0 if unit == "us" else value * 1000.0 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: .*", out)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{out}")
    n_errors = int(errors.group(1)) if errors else 0
    if socket_errors:
        n_errors += sum(int(x) for x in re.findall(r"\d+", socket_errors.group(0)))
    return Figures(float(rps.group(1)), latency("50"), latency("99"), n_errors)


def wrk(url: str, script: Path, duration: float, connections: int) -> Figures:
    argv = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def check_same_answers(servers: list[Server], users: int) -> None:
    """Every server gives the same items (and scores) for a sample of users."""
    for user in range(1, users + 1, max(1, users // 25)):
        answers = [httpx.get(s.url + PATH.format(user=user), timeout=30).json() for s in servers]
        ids = [a["movieId"] for a in answers]
        if any(i != ids[0] for i in ids):
            raise AssertionError(f"user {user}: servers disagree: {ids}")
        for a in answers[1:]:
            if any(abs(x - y) > 1e-9 for x, y in zip(a["score"], answers[0]["score"], strict=True)):
                raise AssertionError(f"user {user}: scores differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--users", type=int, default=200, help="requests rotate over users 1..N")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of both servers (with more than 1, only hand-written vs flight)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (scripts/setup installs it: apt-get install wrk)")

    collector = Collector()
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    otlp = f"http://127.0.0.1:{collector.server_address[1]}"
    flight_env = {
        "FLIGHT_TRACING": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
        "OTEL_SERVICE_NAME": "movielens-bench",
        "FLIGHT_LOG_LEVEL": "warning",
    }
    python_path = os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")])
    servers = [
        Server(
            "hand-written",
            [
                str(BIN / "python"),
                "-m",
                "uvicorn",
                "flight_serving_handwritten:app",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--no-access-log",
                "--log-level",
                "warning",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--workers",
                str(args.workers),
            ],
            REPO / "benchmarks",
            {"PYTHONPATH": python_path},
        ),
        Server(
            "flight",
            [str(BIN / "flight"), "serve", "movielens_app:app", "--workers", str(args.workers)],
            EXAMPLE,
            flight_env,
        ),
        Server(
            "flight+logs",
            [str(BIN / "flight"), "serve", "movielens_app:app"],
            EXAMPLE,
            {**flight_env, "FLIGHT_LOG_LEVEL": "info"},
        ),
        Server(
            "flight, 10% sampled",
            [str(BIN / "flight"), "serve", "movielens_app:app"],
            EXAMPLE,
            {
                **flight_env,
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.1",
            },
        ),
        Server(
            "flight, no tracing",
            [str(BIN / "flight"), "serve", "movielens_app:app"],
            EXAMPLE,
            {"FLIGHT_TRACING": "none", "FLIGHT_LOG_LEVEL": "warning"},
        ),
    ]
    if args.workers > 1:  # the two that answer the question; the variants are for 1 worker
        servers = servers[:2]
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(LUA % {"users": args.users})
    results: dict[str, list[Figures]] = {s.name: [] for s in servers}
    try:
        for s in servers:
            s.start()
        for s in servers:
            s.wait_ready()
        check_same_answers(servers, args.users)
        print(
            f"same answers from all servers for users 1..{args.users}; "
            f"wrk, {args.connections} connections, {args.duration:g}s per run, "
            f"{args.rounds} rounds (noisy on a shared machine: compare the ratios)\n"
        )
        print(f"{'server':<20} {'round':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for round_ in range(1, args.rounds + 1):
            for s in servers:
                wrk(s.url, script, args.warmup, args.connections)
                got = wrk(s.url, script, args.duration, args.connections)
                results[s.name].append(got)
                print(
                    f"{s.name:<20} {round_:>5} {got.rps:>9.1f} {got.p50_ms:>8.2f} "
                    f"{got.p99_ms:>8.2f} {got.errors:>7}",
                    flush=True,
                )
    finally:
        for s in servers:
            s.stop()
        script.unlink(missing_ok=True)
    base = statistics.mean(f.rps for f in results["hand-written"])
    cores = min(args.workers, os.cpu_count() or 1)
    print(
        f"\n{'server':<20} {'mean req/s':>10} {'per core':>9} {'ratio':>6} {'p50 ms':>8} "
        f"{'p99 ms':>8}   ({args.workers} worker(s), {cores} core(s) busy)"
    )
    for name, figures in results.items():
        rps = statistics.mean(f.rps for f in figures)
        p50 = statistics.median(f.p50_ms for f in figures)
        p99 = statistics.median(f.p99_ms for f in figures)
        print(
            f"{name:<20} {rps:>10.1f} {rps / cores:>9.1f} {rps / base:>6.2f} {p50:>8.2f} "
            f"{p99:>8.2f}"
        )
    ratio = statistics.mean(f.rps for f in results["flight"]) / base
    print(f"\nflight (tracing + metrics on) / hand-written throughput: {ratio:.2f} (goal >= 0.90)")
    print(
        f"spans received by the collector stand-in: {collector.spans} in {collector.exports} "
        f"exports"
    )
    collector.shutdown()


if __name__ == "__main__":
    main()
