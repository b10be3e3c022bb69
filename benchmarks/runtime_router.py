"""Router overhead: the SOS router, on both data paths (the Python router alone, and HAProxy
programmed by it), against the instance directly and against nginx and HAProxy as plain
reverse proxies (static configurations) in front of the same instance, in one run with wrk.

    .venv/bin/python benchmarks/runtime_router.py [--seconds 5] [--rounds 2]

For each instance kind (a Go binary, fast enough to stress the proxies, and the stdlib
Python test app) it runs, per target, wrk with 32 connections (throughput) and with one
connection (latency without queueing), alternating the targets over the rounds and
keeping the median. It also reads each proxy's CPU time per request from /proc: that is
what decides throughput, and it is less disturbed by other load on a shared machine (for
sos-haproxy: HAProxy's and the Python process's, which reads HAProxy's request log).
nginx runs one worker and HAProxy one thread, like the router's one event loop; all keep
connections to the instance alive. Goals: router throughput >= 0.8x
nginx's, p50 added over direct <= 1 ms. The machine is shared: compare ratios, not figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import zipapp
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "tests" / "sos" / "runtime" / "apps"

ROUTER = textwrap.dedent(
    """
    import asyncio, sys, uvloop
    from sos.runtime.local.ingress import (
        Endpoint, RevisionTarget, RoutingTable, ServiceRoute, create_ingress,
    )

    async def main() -> None:
        router = create_ingress(sys.argv[3], port=int(sys.argv[1]))
        await router.start()
        endpoint = Endpoint("i1", "hello-00001", int(sys.argv[2]))
        target = RevisionTarget("hello-00001", "hello", (endpoint,))
        router.update(RoutingTable([ServiceRoute("hello", (("hello-00001", 100),))], [target]))
        await router.settle()
        await asyncio.Event().wait()

    uvloop.run(main())
    """
)
#: the targets measured: the instance alone, the SOS router on each data path, and plain
#: nginx and HAProxy reverse proxies (static configurations) in front of the same instance
TARGETS = ("direct", "sos-python", "sos-haproxy", "nginx", "haproxy")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(port: int, host: str = "hello.localhost") -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": host}).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


def build_instances(work: Path) -> dict[str, list[str]]:
    pyz = work / "hello.pyz"
    zipapp.create_archive(APPS / "hello", pyz)
    kinds = {"python (stdlib)": [sys.executable, str(pyz)]}
    go = shutil.which("go")
    if go:
        src = work / "go"
        src.mkdir()
        shutil.copy(APPS / "hello.go", src / "main.go")
        (src / "go.mod").write_text("module hello\n\ngo 1.19\n")
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOPROXY": "off"}
        subprocess.run([go, "build", "-o", "hello"], cwd=src, env=env, check=True)
        kinds = {"go": [str(src / "hello")], **kinds}
    return kinds


def nginx_conf(work: Path, listen: int, upstream: int) -> Path:
    conf = work / f"nginx-{listen}.conf"
    conf.write_text(
        textwrap.dedent(
            f"""
            worker_processes 1;
            daemon off;
            pid {work}/nginx-{listen}.pid;
            error_log {work}/nginx-error.log;
            events {{ worker_connections 4096; }}
            http {{
              access_log off;
              client_body_temp_path {work}/nginx-body;
              proxy_temp_path {work}/nginx-proxy;
              upstream app {{ server 127.0.0.1:{upstream}; keepalive 64; }}
              server {{
                listen 127.0.0.1:{listen};
                location / {{
                  proxy_pass http://app;
                  proxy_http_version 1.1;
                  proxy_set_header Connection "";
                  proxy_set_header Host $host;
                }}
              }}
            }}
            """
        )
    )
    return conf


def haproxy_conf(work: Path, listen: int, upstream: int) -> Path:
    conf = work / f"haproxy-{listen}.cfg"
    conf.write_text(
        textwrap.dedent(
            f"""
            global
              nbthread 1
            defaults
              mode http
              timeout connect 5s
              timeout client 30s
              timeout server 30s
              http-reuse always
            frontend f
              bind 127.0.0.1:{listen}
              default_backend b
            backend b
              server s1 127.0.0.1:{upstream}
            """
        )
    )
    return conf


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk(port: int, connections: int, seconds: float) -> tuple[float, float, float, int]:
    """Requests/s, p50 and p99 in milliseconds, and how many requests were made."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-H",
            "Host: hello.localhost",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        value, unit = re.search(rf"{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * _UNITS[unit]

    if re.search(r"Non-2xx|Socket errors", out):
        print(f"    warning: errors on port {port}: {out.splitlines()[-3:]}")
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, pct("50"), pct("99"), count


def start_targets(
    work: Path, argv: list[str], spawn: Callable[..., int]
) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Start the instance and the proxies in front of it: ports and pids by target."""
    ports = {name: free_port() for name in TARGETS}
    pids = {"direct": [spawn(argv, PORT=str(ports["direct"]), SOS_REVISION="hello-00001")]}
    wait_http(ports["direct"])
    for path in ("python", "haproxy"):
        name = f"sos-{path}"
        if path == "haproxy" and not shutil.which("haproxy"):
            del ports[name]
            continue
        router = [sys.executable, "-c", ROUTER, str(ports[name]), str(ports["direct"]), path]
        pids[name] = [spawn(router, PYTHONPATH=str(ROOT / "src"))]
    if shutil.which("nginx"):
        conf = nginx_conf(work, ports["nginx"], ports["direct"])
        pids["nginx"] = [spawn(["nginx", "-c", str(conf)])]
    else:
        del ports["nginx"]
    if shutil.which("haproxy"):
        conf = haproxy_conf(work, ports["haproxy"], ports["direct"])
        pids["haproxy"] = [spawn(["haproxy", "-f", str(conf)])]
    else:
        del ports["haproxy"]
    for port in ports.values():
        wait_http(port)
    for found in pids.values():  # nginx serves from a worker, the SOS router from HAProxy
        # children of every thread: the SOS router starts HAProxy from a worker thread
        for children in Path(f"/proc/{found[0]}/task").glob("*/children"):
            found += [int(child) for child in children.read_text().split()]
    return ports, pids


def measure(
    ports: dict[str, int], pids: dict[str, list[int]], seconds: float, rounds: int
) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, list[float]]] = {name: {} for name in ports}
    for round_ in range(rounds):
        for name in list(ports) if round_ % 2 == 0 else list(reversed(ports)):
            before = cpu_seconds(pids[name])
            rps, p50, p99, count = wrk(ports[name], 32, seconds)
            cpu_us = (cpu_seconds(pids[name]) - before) / count * 1e6
            _, p50_1, _, _ = wrk(ports[name], 1, max(2.0, seconds / 2))
            figures = {"rps": rps, "p50": p50, "p99": p99, "p50@1": p50_1, "cpu": cpu_us}
            for key, value in figures.items():
                results[name].setdefault(key, []).append(value)
    return {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}


def report(kind: str, med: dict[str, dict[str, float]]) -> None:
    print(f"instance: {kind}")
    print(
        f"  {'target':12} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p50@1conn':>10} "
        f"{'CPU us/req':>10}"
    )
    for name, m in med.items():
        print(
            f"  {name:12} {m['rps']:10.0f} {m['p50']:8.2f} {m['p99']:8.2f} "
            f"{m['p50@1']:10.3f} {m['cpu']:10.1f}"
        )
    base = med["direct"]["p50@1"]
    for name in TARGETS[1:]:
        if name in med:
            added = med[name]["p50@1"] - base
            print(f"  {name}: p50 added over direct (1 conn): {added:.3f} ms (goal <= 1 ms)")
    for ours in ("sos-python", "sos-haproxy"):
        for peer in ("nginx", "haproxy"):
            if ours in med and peer in med:
                ratio = med[ours]["rps"] / med[peer]["rps"]
                efficiency = med[peer]["cpu"] / med[ours]["cpu"]
                print(
                    f"  {ours}/{peer}: throughput {ratio:.2f}x, requests per CPU second "
                    f"{efficiency:.2f}x (goal >= 0.8x)"
                )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (scripts/setup installs it)")
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str], **env: str) -> int:
        process = subprocess.Popen(
            argv,
            env={**os.environ, "HOST": "127.0.0.1", **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # nginx's workers go with their master on the group kill
        )
        processes.append(process)
        return process.pid

    print(f"router benchmark: wrk -t1, {args.seconds:g}s per run, median of {args.rounds} rounds")
    print("(shared 2-core machine: throughput is noisy; CPU per request much less so)\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            for kind, argv in build_instances(work).items():
                ports, pids = start_targets(work, argv, spawn)
                report(kind, measure(ports, pids, args.seconds, args.rounds))
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.wait()
                processes.clear()
        finally:
            for process in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
