"""Per-request cost as the ids a process has seen grow: Flight against a hand-written
numpy/pandas union-and-exclude, in one run.

    .venv/bin/python benchmarks/flight_keys.py [--requests 2000] [--ids 500]

Each request has two sources of ``--ids`` new item ids each (9-digit catalogue ids, or
strings with ``--strings``), overlapping by half, and an exclude of a tenth of them, then
``Head(100)``. Every request brings ids no earlier request had, so a cost that grew with
the ids a process has seen (Flight's old process-wide interner: 0.9 ms -> 68 ms after 400k
string ids) shows as a rising line. The hand-written baseline is what a careful engineer
writes without Flight: ``pd.unique(np.concatenate(...))`` and ``np.isin`` for the exclude.
It prints the median per-request time in each tenth of the run for both, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd

import flight.operators as fo
from flight import Pipeline


class Given(fo.SourceOperator):
    """The ids the benchmark put in the context under ``slot``."""

    slot: str = "a"

    async def __call__(self, **ctx: Any) -> fo.Source:
        return fo.Source(ctx[self.slot])


def batches(requests: int, size: int, strings: bool, seed: int = 1) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(seed)
    start = 100_000_000
    out = []
    for i in range(requests):
        base = start + i * size * 2
        a = np.arange(base, base + size, dtype=np.int64)
        b = np.arange(base + size // 2, base + size + size // 2, dtype=np.int64)
        ex = rng.choice(a, size // 10, replace=False)
        if strings:
            a, b, ex = (
                a.astype(str).astype(object),
                b.astype(str).astype(object),
                ex.astype(str).astype(object),
            )
        out.append((a, b, ex))
    return out


def hand(a: Any, b: Any, ex: Any) -> Any:
    union = pd.unique(np.concatenate([a, b]))
    return union[~np.isin(union, ex)][:100]


async def run_flight(data: list[tuple[Any, ...]]) -> list[float]:
    pipeline = Pipeline(
        "keys", item_type="item", includes=[Given(slot="a"), Given(slot="b")],
        excludes=[Given(slot="ex")],
    ) | fo.Head(n=100)  # fmt: skip
    times = []
    for a, b, ex in data:
        t0 = time.perf_counter()
        result = await pipeline.execute(a=a, b=b, ex=ex)
        times.append(time.perf_counter() - t0)
        assert len(result.items) == 100
    return times


def run_hand(data: list[tuple[Any, ...]]) -> list[float]:
    times = []
    for a, b, ex in data:
        t0 = time.perf_counter()
        assert len(hand(a, b, ex)) == 100
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--ids", type=int, default=500)
    parser.add_argument("--strings", action="store_true")
    args = parser.parse_args()
    data = batches(args.requests, args.ids, args.strings)
    kind = "string" if args.strings else "9-digit"
    print(
        f"machine: {platform.node()}, Python {platform.python_version()}; "
        f"{args.requests} requests x {int(args.ids * 1.5)} new {kind} ids"
    )
    flight_times = asyncio.run(run_flight(data))
    hand_times = run_hand(data)
    tenth = max(1, args.requests // 10)
    print(f"{'ids seen':>10} {'flight ms':>10} {'hand ms':>9} {'ratio':>6}")
    for i in range(0, args.requests, tenth):
        f = statistics.median(flight_times[i : i + tenth]) * 1000
        h = statistics.median(hand_times[i : i + tenth]) * 1000
        seen = int(i * args.ids * 1.5)
        print(f"{seen:>10} {f:>10.3f} {h:>9.3f} {f / h:>6.1f}")
    first = statistics.median(flight_times[:tenth])
    last = statistics.median(flight_times[-tenth:])
    print(f"flight: last tenth / first tenth = {last / first:.2f} (flat is 1.0)")


if __name__ == "__main__":
    main()
