"""Sticky A/B splits and shadow traffic on the local runtime, through a real `sos server`,
for both data paths (HAProxy in front of the Python router, the Python router alone) in
one run:

- sticky split accuracy: 10,000 distinct ``X-User-Id`` keys at 70/30, each revision's
  share (goal: within 1 point of its percent);
- minimal reassignment: the share of those keys whose revision changes when 90/10 becomes
  80/20 (goal: 10 +- 1%), and whether every key that moved went to the revision that grew;
- shadow cost: the primary's p50 with 100% of its requests mirrored to a shadow revision
  against no shadow (goal: <= 1 ms added), measured in interleaved rounds (ABBA: no shadow,
  shadow, shadow, no shadow, ...) of sequential requests on one keep-alive connection, the
  median of the rounds' medians for each; on HAProxy a service with a shadow goes through
  the Python router (which mirrors), so the figure includes that hop;
- failed requests on the primary (goal: 0), over all of it.

    .venv/bin/python benchmarks/experiments.py [--keys 10000] [--rounds 6] [--requests 300]
        [--routers haproxy,python] [--network private|host]

Bounded: a fixed number of requests from a few threads to 127.0.0.1. The apps are the
stdlib test app (``tests/sos/runtime/apps/hello``) answering Flight-shaped JSON at
``/recs`` (``HELLO_ITEMS``). The machine is shared: latency figures are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))  # the tests' helpers

from sos_harness import ServerProcess, ready_revision, serving_hello  # noqa: E402

from sos import traffic  # noqa: E402
from sos.client import Client  # noqa: E402
from sos.models import ServiceSpec, TrafficRoute  # noqa: E402

SERVICE = "bench-ab"
KEY = "X-User-Id"
THREADS = 8


def revision(client: Client, items: str) -> str:
    return ready_revision(client, SERVICE, {"HELLO_ITEMS": items})


def route(
    split: dict[str, int], *, sticky: bool = False, shadow: str | None = None
) -> TrafficRoute:
    return TrafficRoute.model_validate(
        {
            "routes": [{"revision": rev, "percent": pct} for rev, pct in split.items()],
            "split_by": f"header:{KEY}" if sticky else None,
            "shadow": [{"revision": shadow, "percent": 100}] if shadow else [],
        }
    )


class Bench:
    def __init__(self, client: Client, router_port: int) -> None:
        self.client = client
        self.url = f"http://127.0.0.1:{router_port}/recs"
        self.failed = Counter[str]()
        self.requests = 0

    def set(self, split: dict[str, int], **options: object) -> None:
        self.client.set_traffic(SERVICE, route(split, **options))  # type: ignore[arg-type]

    def keyed(self, keys: list[str]) -> dict[str, str]:
        """Key -> the revision that answered, from a few threads."""

        def part(chunk: list[str]) -> dict[str, str]:
            out = {}
            with httpx.Client(headers={"Host": f"{SERVICE}.localhost"}, timeout=30) as http:
                for key in chunk:
                    answer = http.get(self.url, headers={KEY: key})
                    self.count(answer)
                    out[key] = answer.headers.get("sos-revision", "")
            return out

        chunks = [keys[i::THREADS] for i in range(THREADS)]
        found: dict[str, str] = {}
        with ThreadPoolExecutor(THREADS) as pool:
            for result in pool.map(part, chunks):
                found.update(result)
        return found

    def count(self, answer: httpx.Response) -> None:
        self.requests += 1
        if answer.status_code >= 500:
            self.failed[answer.headers.get("sos-revision", "")] += 1

    def until_sticky(self, split: dict[str, int], probe: list[str]) -> None:
        """Wait until the router routes ``split`` (the probe keys land as the rule says)."""
        ranges = traffic.sticky_ranges(split)
        want = {key: traffic.sticky_revision(ranges, key) for key in probe}
        deadline = time.monotonic() + 30
        while self.keyed(probe) != want:
            if time.monotonic() > deadline:
                raise SystemExit("the sticky split did not take effect in 30 s")
            time.sleep(0.2)

    def latencies(self, n: int) -> list[float]:
        """Milliseconds of ``n`` sequential requests on one keep-alive connection."""
        out = []
        with httpx.Client(headers={"Host": f"{SERVICE}.localhost"}, timeout=30) as http:
            for _ in range(20):  # warm: the connection, the route just set
                self.count(http.get(self.url))
            for _ in range(n):
                began = time.perf_counter()
                answer = http.get(self.url)
                out.append((time.perf_counter() - began) * 1000)
                self.count(answer)
        return out


def run(client: Client, server: ServerProcess, args: argparse.Namespace) -> None:
    client.apply(ServiceSpec(name=SERVICE, team="bench"))
    one = revision(client, "a,b,c,d,e,f,g,h,i,j")
    two = revision(client, "a,b,c,d,e,f,g,h,i,j")
    three = revision(client, "b,a,c,d,e,f,g,h,x,y")  # the shadow: a little different
    bench = Bench(client, server.router_port)
    keys = [f"user-{i}" for i in range(args.keys)]
    probe = keys[:64]

    # 1. sticky split accuracy at 70/30
    split = {one: 70, two: 30}
    bench.set(split, sticky=True)
    bench.until_sticky(split, probe)
    seen = bench.keyed(keys)
    shares = Counter(seen.values())
    ranges = traffic.sticky_ranges(split)
    off_rule = sum(1 for k in keys if seen[k] != traffic.sticky_revision(ranges, k))
    print(f"  sticky 70/30 over {len(keys):,} distinct keys:")
    for rev, percent in split.items():
        got = shares[rev] / len(keys) * 100
        print(f"    {rev}: {got:.2f}% (want {percent}%, {got - percent:+.2f} points)")
    print(f"    keys not where sos.traffic.sticky_revision puts them: {off_rule}")

    # 2. minimal reassignment, 90/10 -> 80/20
    before_split, after_split = {one: 90, two: 10}, {one: 80, two: 20}
    bench.set(before_split, sticky=True)
    bench.until_sticky(before_split, probe)
    before = bench.keyed(keys)
    bench.set(after_split, sticky=True)
    bench.until_sticky(after_split, probe)
    after = bench.keyed(keys)
    moved = [k for k in keys if before[k] != after[k]]
    toward = sum(1 for k in moved if before[k] == one and after[k] == two)
    print(
        f"  90/10 -> 80/20: {len(moved) / len(keys) * 100:.2f}% of keys reassigned "
        f"(want 10 +- 1), {toward} of {len(moved)} from {one} to {two}"
    )

    # 3. the primary's p50 with 100% shadowed, against none, interleaved (ABBA)
    rounds: dict[bool, list[float]] = {False: [], True: []}
    p99s: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.rounds):
        for shadowed in (False, True) if r % 2 == 0 else (True, False):
            bench.set({one: 100}, shadow=three if shadowed else None)
            time.sleep(1.0)  # the reconciler applies it; the warm-up requests follow
            values = bench.latencies(args.requests)
            rounds[shadowed].append(statistics.median(values))
            p99s[shadowed].append(statistics.quantiles(values, n=100)[98])
    base, mirrored = statistics.median(rounds[False]), statistics.median(rounds[True])
    print(f"  primary p50, {args.rounds} interleaved rounds of {args.requests} requests:")
    print(f"    no shadow   {base:.3f} ms (rounds: {', '.join(f'{v:.3f}' for v in rounds[False])})")
    print(
        f"    100% shadow {mirrored:.3f} ms (rounds: {', '.join(f'{v:.3f}' for v in rounds[True])})"
    )
    print(
        f"    added: {mirrored - base:+.3f} ms (goal <= 1 ms); p99 "
        f"{statistics.median(p99s[False]):.2f} -> {statistics.median(p99s[True]):.2f} ms"
    )
    report = client.shadow_report(SERVICE)
    for pair in report.pairs:
        print(
            f"    report {pair.primary} -> {pair.shadow}: mirrored {pair.mirrored}, dropped "
            f"{pair.dropped}, compared {pair.compared}, same status {pair.status_agreement}, "
            f"overlap@{pair.k} {pair.overlap_at_k}, RBO {pair.rbo}, top-1 {pair.top1_agreement}"
        )
    print(
        f"  failed requests (5xx or none): {sum(bench.failed.values())} of {bench.requests}"
        + (f" {dict(bench.failed)}" if bench.failed else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each (even: ABBA)")
    parser.add_argument("--requests", type=int, default=300, help="requests per round")
    parser.add_argument("--routers", default="haproxy,python")
    parser.add_argument("--network", choices=["private", "host"], default=None)
    args = parser.parse_args()
    for router in args.routers.split(","):
        with tempfile.TemporaryDirectory(prefix="sos-bench-experiments-") as tmp:
            env = {"SOS_ROUTER": router}
            if args.network:
                env["SOS_SANDBOX_NETWORK"] = args.network
            with serving_hello(Path(tmp), **env) as (server, client):
                network = args.network or "the default"
                print(f"\n== {router} data path (sos server, instances' network: {network})")
                run(client, server, args)


if __name__ == "__main__":
    main()
