"""Flight engine vs the same pipeline hand-written in plain pandas, in one run.

The pipeline: two includes (with a score column each), one exclude, hydrate three item
attributes, two filters (price threshold, category match), a weighted score, a
category-diverse sample of 50 (at most 5 per category) and a sort. Both versions get the
same source data from the same async functions and must return the same items (checked).
The pandas version is what a careful data scientist writes: outer merge, ``isin``, a left
merge for attributes, boolean masks, ``groupby().cumcount()`` for the diverse pick.

    .venv/bin/python benchmarks/flight_pipeline.py [--sizes 1000,10000,50000,200000]

Prints p50/p99 per size for both and the ratio flight/pandas (< 1 means Flight is faster).
Figures are noisy on a shared machine; compare the ratios, which are measured side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pandas as pd

import flight.operators as fo
from flight import Engine, Pipeline, TableProvider, register_provider

CATEGORIES = [f"cat{i:02d}" for i in range(20)]
ALLOWED = CATEGORIES[:16]
N_PICK, PER_CATEGORY = 50, 5


class Data:
    """Source outputs and the item catalogue for one size (built once, reused per request)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        catalogue = rng.permutation(np.arange(3 * n, dtype=np.int64))  # ids, in no order
        self.attributes = pd.DataFrame(
            {
                "item": catalogue,
                "category": pd.Categorical(rng.choice(CATEGORIES, size=len(catalogue))),
                "price": rng.uniform(1, 100, size=len(catalogue)),
                "quality": rng.uniform(0, 1, size=len(catalogue)),
            }
        )
        pool = catalogue[:n]  # the union of the includes is n items
        a_ids, b_ids = pool[: int(0.6 * n)], pool[int(0.4 * n) :]
        self.a = pd.DataFrame({"item": a_ids, "relevance": rng.uniform(0, 1, len(a_ids))})
        self.b = pd.DataFrame({"item": b_ids, "recency": rng.uniform(0, 1, len(b_ids))})
        self.excluded = pd.DataFrame({"item": rng.choice(pool, size=n // 20, replace=False)})

    async def fetch_a(self) -> pd.DataFrame:
        return self.a

    async def fetch_b(self) -> pd.DataFrame:
        return self.b

    async def fetch_excluded(self) -> pd.DataFrame:
        return self.excluded


CURRENT: dict[str, Data] = {}


class Relevant(fo.SourceOperator):
    async def __call__(self, **ctx: Any) -> fo.Source:
        return fo.Source(await CURRENT["data"].fetch_a())


class Recent(fo.SourceOperator):
    async def __call__(self, **ctx: Any) -> fo.Source:
        return fo.Source(await CURRENT["data"].fetch_b())


class Seen(fo.SourceOperator):
    async def __call__(self, **ctx: Any) -> fo.Source:
        return fo.Source(await CURRENT["data"].fetch_excluded())


PIPELINE = Pipeline("bench", item_type="item").initialize(
    includes=[Relevant(), Recent()], excludes=[Seen()]
) | [
    fo.Hydrate(["category", "price", "quality"]),
    fo.Threshold("price", max=80),
    fo.Match("category", values=ALLOWED),
    fo.WeightedScore({"relevance": 0.5, "recency": 0.3, "quality": 0.2}),
    fo.DiverseSample(n=N_PICK, maximize="score", by="category", max_per_group=PER_CATEGORY),
    fo.Sort("score", desc=True),
]


async def pandas_version(data: Data) -> pd.DataFrame:
    a, b, seen = await asyncio.gather(data.fetch_a(), data.fetch_b(), data.fetch_excluded())
    cand = a.merge(b, on="item", how="outer")
    cand = cand[~cand["item"].isin(seen["item"])]
    cand = cand.merge(data.attributes, on="item", how="left")
    cand = cand[cand["price"] <= 80]
    cand = cand[cand["category"].isin(ALLOWED)]
    cand = cand.assign(
        score=0.5 * cand["relevance"].fillna(0)
        + 0.3 * cand["recency"].fillna(0)
        + 0.2 * cand["quality"].fillna(0)
    )
    cand = cand.sort_values("score", ascending=False, kind="stable")
    cand = cand.assign(rank=cand.groupby("category", observed=True).cumcount())
    cand = cand[cand["rank"] < PER_CATEGORY]
    top = cand.sort_values("rank", kind="stable").head(N_PICK)
    return top.sort_values("score", ascending=False, kind="stable")[["item", "score"]]


async def timed(fn: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def bench(sizes: list[int], budget_s: float) -> None:
    engine = Engine(log=True)  # logging hook installed, INFO disabled: production default
    print(
        f"{'candidates':>10} | {'flight p50':>10} {'p99':>8} | {'pandas p50':>10} {'p99':>8} |"
        f" {'ratio p50':>9} {'ratio p99':>9}"
    )
    for n in sizes:
        data = Data(n)
        CURRENT["data"] = data
        register_provider(TableProvider(data.attributes, key="item"), replace=True)

        async def flight_run() -> Any:
            return await engine.execute(PIPELINE, return_cols=["item", "score"])

        async def pandas_run(data: Data = data) -> Any:
            return await pandas_version(data)

        got = (await flight_run()).items
        want = await pandas_run()
        assert got["item"].tolist() == want["item"].tolist(), "results differ"
        assert np.allclose(got["score"], want["score"])
        one = statistics.median(await timed(pandas_run, 3)) / 1000.0
        runs = int(min(500, max(20, budget_s / max(one, 1e-4) / 2)))
        await timed(flight_run, 5)
        f_times: list[float] = []
        p_times: list[float] = []
        for _ in range(runs):  # interleaved, so both see the same machine noise
            f_times += await timed(flight_run, 1)
            p_times += await timed(pandas_run, 1)
        f50, f99, p50, p99 = pct(f_times, 50), pct(f_times, 99), pct(p_times, 50), pct(p_times, 99)
        print(
            f"{n:>10} | {f50:>8.2f}ms {f99:>6.2f}ms | {p50:>8.2f}ms {p99:>6.2f}ms |"
            f" {f50 / p50:>9.2f} {f99 / p99:>9.2f}   ({runs} runs each)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000,200000")
    parser.add_argument("--budget", type=float, default=8.0, help="seconds per size (about)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    asyncio.run(bench(sizes, args.budget))


if __name__ == "__main__":
    main()
