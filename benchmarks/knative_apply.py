"""What one reconcile of a Knative-backed service costs: API requests and SOS-side time.

The reconciler calls ``KnativeBackend.apply`` and ``observe`` on every change and every
0.25 s while a revision is neither ready nor failed, so their cost lands on the cluster's
API server (requests) and on the SOS server (CPU). Measured in one run, over real HTTP on
127.0.0.1 with the official client, against the stand-in API server running in its own
thread (so the SOS side's CPU time is measured apart from the stand-in's):

- baseline: one GET of the Knative Service (one API round trip);
- apply with nothing changed (GET + LIST, no write), observe (GET + LIST);
- apply with a traffic change (GET + LIST + server-side apply PATCH);
- rendering alone (pure Python) for services with 1, 20 and 100 revisions;
- the reconciler's converge loop (apply + observe every 0.25 s, 40 virtual seconds, on a
  virtual clock) with the backend's read throttle (``min_interval`` 1 s) and without it:
  API requests per second for one deploying service.

    .venv/bin/python benchmarks/knative_apply.py [--rounds 200]

Prints requests per call, wall-clock p50/p99 (includes the stand-in, which is slower than a
real API server and validates every PATCH against the CRD schema) and SOS-side CPU per call
with its ratio to the baseline GET. Figures are noisy on a shared machine; compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import kmock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sos" / "knative"))

from knative_samples import desired, revision
from knative_standin import KnativeStandIn

from conftest import write_kubeconfig
from sos.runtime.knative import KnativeBackend, KnativeSettings, render_service


class StandInThread:
    """The stand-in API server on its own event loop in a thread."""

    def __init__(self) -> None:
        self.url: Future[str] = Future()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self.thread.start()

    async def _serve(self) -> None:
        async with kmock.KubernetesScaffold() as handler, kmock.Server(handler) as server:
            KnativeStandIn(handler)
            self.handler = handler
            self.loop = asyncio.get_running_loop()
            self.stopped = asyncio.Event()
            self.url.set_result(str(server.url).rstrip("/"))
            await self.stopped.wait()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(timeout=10)

    def count(self) -> int:
        return len(self.handler._requests)


def _reader(now: list[float]) -> Callable[[], float]:
    return lambda: now[0]


def _summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]


async def _measure(
    rounds: int, standin: StandInThread, action: Callable[[int], Awaitable[Any]]
) -> tuple[list[float], float, float]:
    wall = []
    before_requests = standin.count()
    cpu_start = time.thread_time()
    for index in range(rounds):
        start = time.perf_counter()
        await action(index)
        wall.append(time.perf_counter() - start)
    cpu = (time.thread_time() - cpu_start) / rounds
    return wall, cpu, (standin.count() - before_requests) / rounds


async def main(rounds: int) -> None:
    two = [revision(1), revision(2)]
    splits = [desired(two, routes=[(2, 100 - p, None), (1, p, "canary")]) for p in (10, 20)]
    standin = StandInThread()
    url = standin.url.result(timeout=30)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = write_kubeconfig(Path(tmp) / "kubeconfig", url)
        settings = KnativeSettings(kubeconfig=str(config), artifact_url="http://sos:8700")
        backend = KnativeBackend(settings, min_interval=0)
        await backend.start()
        try:
            await backend.apply(splits[0])
            cases: list[tuple[str, Callable[[int], Awaitable[Any]]]] = [
                ("GET Knative Service (baseline)", lambda _: backend._get_service("recs")),
                ("apply, nothing changed", lambda _: backend.apply(splits[0])),
                ("observe", lambda _: backend.observe("recs")),
                ("apply, traffic changed", lambda i: backend.apply(splits[(i + 1) % 2])),
            ]
            for label, action in cases:
                rows.append((label, *await _measure(rounds, standin, action)))
        finally:
            await backend.close()

    base_cpu = rows[0][2]
    print(f"Knative backend, {rounds} rounds each (stand-in API server in its own thread)")
    header = (
        f"{'case':<32}{'requests':>9}{'wall p50':>10}{'wall p99':>10}{'SOS CPU':>9}{'x GET':>7}"
    )
    print(header + "   (ms)")
    for label, wall, cpu, requests in rows:
        p50, p99 = _summary(wall)
        print(
            f"{label:<32}{requests:>9.1f}{p50 * 1e3:>10.2f}{p99 * 1e3:>10.2f}"
            f"{cpu * 1e3:>9.2f}{cpu / base_cpu:>7.1f}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        config = write_kubeconfig(Path(tmp) / "kubeconfig", url)
        for interval in (0.0, 1.0):
            now = [0.0]
            loop = KnativeBackend(
                KnativeSettings(kubeconfig=str(config), artifact_url="http://sos:8700"),
                min_interval=interval,
                clock=_reader(now),
            )
            await loop.start()
            try:
                before = standin.count()
                while now[0] < 40:
                    await loop.apply(splits[0])
                    await loop.observe("recs")
                    now[0] += 0.25
                rate = (standin.count() - before) / 40
            finally:
                await loop.close()
            label = f"converge loop, min_interval {interval:g}s"
            print(f"{label:<32}{rate:>9.1f} requests per second per deploying service")
    standin.stop()

    render_settings = KnativeSettings(namespace="ml")
    for count in (1, 20, 100):
        many = desired([revision(n) for n in range(1, count + 1)], routes=[(count, 100, None)])
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            render_service(many, render_settings)
            samples.append(time.perf_counter() - start)
        p50, p99 = _summary(samples)
        print(f"{f'render, {count} revisions':<32}{0:>9.1f}{p50 * 1e3:>10.3f}{p99 * 1e3:>10.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    asyncio.run(main(parser.parse_args().rounds))
