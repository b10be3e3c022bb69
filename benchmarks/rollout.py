"""Rollouts that stop themselves, on the local runtime, through a real `sos server`:

- a healthy candidate: steps 10, 50, 100 of ``--step`` seconds under a steady load; how
  long the rollout takes (floor: three steps) and how many requests failed (goal: 0);
- an error burst: a candidate with a bug behind one path (``HELLO_FAIL_PATH``), rolled out
  under load; after a few seconds the load switches to that path (the burst). The time from
  the burst's first request to the rollout's rollback (goal: within one step interval),
  the candidate's failed requests before it, and the primary's failed requests through
  all of it (goal: 0: the primary answers that path with 200).

    .venv/bin/python benchmarks/rollout.py [--step 20] [--router python|haproxy] [--rate 150]

The load is a bounded loop of httpx requests to 127.0.0.1 (``--rate`` per second, a few
workers), counted per revision by the ``Sos-Revision`` header. The server samples metrics
every 0.5 s and looks at rollouts every 0.2 s (``SOS_METRICS_INTERVAL``,
``SOS_ROLLOUT_TICK``); by default it samples every 2 s and looks every 1 s, which adds up
to about 3 s to the time to a rollback. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))  # the tests' helpers

from sos_harness import ServerProcess, ready_revision, serving_hello  # noqa: E402

from sos import traffic  # noqa: E402
from sos.client import Client  # noqa: E402
from sos.models import Rollout, ServiceSpec  # noqa: E402

SERVICE = "bench-rollout"
BUG = "/bug"


@dataclass
class Load:
    """Requests at a steady rate from a few threads; what answered, and when."""

    router_port: int
    rate: float
    path: str = "/"
    stop: threading.Event = field(default_factory=threading.Event)
    #: (monotonic time, revision or "", status or 0 for no answer)
    answers: list[tuple[float, str, int]] = field(default_factory=list)

    def run(self, workers: int = 6) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._worker, args=(workers,), daemon=True)
            for _ in range(workers)
        ]
        for thread in threads:
            thread.start()
        return threads

    def _worker(self, workers: int) -> None:
        gap = workers / self.rate
        url = f"http://127.0.0.1:{self.router_port}"
        with httpx.Client(headers={"Host": f"{SERVICE}.localhost"}, timeout=10) as http:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    answer = http.get(url + self.path)
                    self.answers.append(
                        (started, answer.headers.get("sos-revision", ""), answer.status_code)
                    )
                except httpx.HTTPError:
                    self.answers.append((started, "", 0))
                time.sleep(max(0.0, gap - (time.monotonic() - started)))

    def failed(self, since: float = 0, revision: str | None = None) -> Counter[str]:
        """Failed answers (5xx or none) since ``since``, by revision ("" = no revision)."""
        return Counter(
            rev
            for at, rev, status in self.answers
            if at >= since and (status == 0 or status >= 500) and (revision in (None, rev))
        )


def revision(client: Client, env: dict[str, str]) -> str:
    return ready_revision(client, SERVICE, env)


def wait_end(client: Client, timeout: float) -> tuple[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get_rollout(SERVICE)
        if state.state != "running":
            return state.state, time.monotonic()
        time.sleep(0.05)
    raise SystemExit(f"the rollout did not end in {timeout:g}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", type=float, default=20, help="seconds per step")
    parser.add_argument("--router", choices=["python", "haproxy"], default="python")
    parser.add_argument("--rate", type=float, default=150, help="requests per second")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="sos-bench-rollout-") as tmp,
        serving_hello(
            Path(tmp), SOS_METRICS_INTERVAL="0.5", SOS_ROLLOUT_TICK="0.2", SOS_ROUTER=args.router
        ) as (server, client),
    ):
        run(client, server, args)


def run(client: Client, server: ServerProcess, args: argparse.Namespace) -> None:
    client.apply(ServiceSpec(name=SERVICE, team="bench"))
    first = revision(client, {})
    healthy = revision(client, {"BENCH": "healthy"})
    buggy = revision(client, {"HELLO_FAIL_PATH": BUG})
    step = args.step
    print(f"rollouts on the local runtime ({args.router} router), steps 10,50,100 of {step:g}s,")
    print(f"load {args.rate:g} requests/s from 6 threads to 127.0.0.1 through the router")

    load = Load(server.router_port, args.rate)
    threads = load.run()
    try:
        time.sleep(2)
        started = time.monotonic()
        client.start_rollout(
            SERVICE,
            Rollout(to=healthy, step_seconds=step, max_error_rate=0.02, min_requests=20),
        )
        state, ended = wait_end(client, 6 * step + 30)
        took = ended - started
        print("\n== a healthy candidate")
        print(f"  {state} in {took:.1f}s (three steps: {3 * step:g}s)")
        print(
            f"  traffic now: {traffic.describe(client.get_traffic(SERVICE))}; failed requests: "
            f"{sum(load.failed(started).values())} of "
            f"{sum(1 for a in load.answers if a[0] >= started)}"
        )

        started = time.monotonic()
        client.start_rollout(
            SERVICE,
            Rollout(to=buggy, step_seconds=step, max_error_rate=0.02, min_requests=20),
        )
        time.sleep(min(5.0, step / 2))
        burst = time.monotonic()
        load.path = BUG  # the candidate's bug meets real requests from now on
        state, ended = wait_end(client, 6 * step + 30)
        rollout = client.get_rollout(SERVICE)
        print("\n== an error burst on the candidate")
        print(f"  {state} {ended - burst:.2f}s after the burst began (a step is {step:g}s)")
        print(f"  reason: {rollout.reason}")
        print(f"  traffic now: {traffic.describe(client.get_traffic(SERVICE))}")
        time.sleep(2)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(15)
    total = len(load.answers)
    on_candidate = load.failed(burst, buggy)[buggy]
    primary = sum(n for rev, n in load.failed().items() if rev not in (buggy,))
    print(f"  the candidate's failed requests before the rollback: {on_candidate}")
    print(f"\nfailed requests not served by the buggy candidate, over all {total}: {primary}")
    print(f"  (by revision: {dict(load.failed())}; {first} had traffic before both rollouts)")


if __name__ == "__main__":
    main()
