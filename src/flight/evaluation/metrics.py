"""Top-k metrics per user, and their bootstrap confidence intervals.

Per user, with ``L`` the top ``k`` recommended items (fewer when fewer came back) and ``R``
the relevant held-out items (binary relevance):

- ``precision@k`` = |L ∩ R| / k
- ``recall@k`` = |L ∩ R| / |R|
- ``ndcg@k`` = DCG / IDCG with DCG = Σ 1/log2(rank + 1) over the hits, IDCG the same for
  min(|R|, k) hits at the top
- ``map@k`` = Σ over hits at rank i of precision@i, divided by min(|R|, k)
- ``diversity`` (intra-list) = share of pairs of items in L whose attribute differs
- ``novelty`` = mean of -log2(share of training users who interacted with the item)
- ``popularity`` = mean number of training interactions of the items in L
- ``empty`` = 1 when nothing came back

Every figure is the mean over evaluated users; ``coverage`` is the share of the catalogue
recommended to anyone. Intervals are percentile bootstrap intervals over users (resampled
with replacement, ``seed`` fixed, so the same run gives the same intervals), and a paired
comparison bootstraps the per-user differences between two pipelines.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Interval",
    "ListMetrics",
    "bootstrap_mean",
    "bootstrap_paired",
    "coverage",
    "flat_figures",
    "json_number",
    "list_metrics",
]

PER_USER = ("ndcg", "recall", "precision", "map")


@dataclasses.dataclass(frozen=True)
class ListMetrics:
    ndcg: float
    recall: float
    precision: float
    map: float
    diversity: float | None  # None for lists of fewer than two items
    novelty: float | None  # None for empty lists
    popularity: float | None
    empty: bool


def list_metrics(
    items: Sequence[Any],
    relevant: frozenset[Any],
    k: int,
    *,
    attribute: Sequence[Any] | None = None,
    counts: Mapping[Any, int] | None = None,
    n_users: int = 1,
) -> ListMetrics:
    """The metrics of one user's list (see the module docs)."""
    top = list(items)[:k]
    hits = [item in relevant for item in top]
    n_hits = sum(hits)
    n_rel = len(relevant)
    dcg = sum(1.0 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit)
    idcg = sum(1.0 / math.log2(rank + 2) for rank in range(min(n_rel, k)))
    ap, seen = 0.0, 0
    for rank, hit in enumerate(hits, start=1):
        if hit:
            seen += 1
            ap += seen / rank
    diversity: float | None = None
    if attribute is not None and len(top) >= 2:
        values = list(attribute)[:k]
        pairs = len(values) * (len(values) - 1) / 2
        same = sum(
            1
            for i in range(len(values))
            for j in range(i + 1, len(values))
            if values[i] == values[j]
        )
        diversity = 1.0 - same / pairs
    novelty = popularity = None
    if counts is not None and top:
        pops = [counts.get(item, 0) for item in top]
        popularity = float(np.mean(pops))
        # an item no training user touched counts as seen once (finite novelty)
        novelty = float(np.mean([-math.log2(max(p, 1) / max(n_users, 1)) for p in pops]))
    return ListMetrics(
        ndcg=dcg / idcg if idcg else 0.0,
        recall=n_hits / n_rel if n_rel else 0.0,
        precision=n_hits / k,
        map=ap / min(n_rel, k) if n_rel else 0.0,
        diversity=diversity,
        novelty=novelty,
        popularity=popularity,
        empty=not top,
    )


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap interval (``low``..``high``) at ``level``."""

    value: float
    low: float
    high: float
    level: float = 0.95

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def flat_figures(figures: Mapping[str, Any]) -> dict[str, Any]:
    """Figures for JSON: each :class:`Interval` as its value, and every interval under
    ``intervals`` as ``{"value", "low", "high"}`` (NaN as null)."""
    flat: dict[str, Any] = {}
    intervals: dict[str, Any] = {}
    for key, value in figures.items():
        if isinstance(value, Interval):
            flat[key] = json_number(value.value)
            intervals[key] = {k: json_number(v) for k, v in value.to_dict().items()}
        else:
            flat[key] = value
    flat["intervals"] = intervals
    return flat


def json_number(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


def _resamples(n: int, rounds: int, seed: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(rounds, n))


def _interval(value: float, samples: np.ndarray[Any, Any], level: float) -> Interval:
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(value), float(low), float(high), level)


def bootstrap_mean(
    values: Sequence[float] | np.ndarray[Any, Any],
    *,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """The mean of ``values`` with a percentile bootstrap interval (NaNs are left out)."""
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    if len(data) == 0:
        return Interval(math.nan, math.nan, math.nan, level)
    means = data[_resamples(len(data), rounds, seed)].mean(axis=1)
    return _interval(float(data.mean()), means, level)


def bootstrap_paired(
    values: Sequence[float] | np.ndarray[Any, Any],
    baseline: Sequence[float] | np.ndarray[Any, Any],
    *,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Mean of the per-user differences ``values - baseline`` (same users, same order)."""
    a, b = np.asarray(values, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("a paired comparison needs the same users on both sides")
    return bootstrap_mean(a - b, rounds=rounds, seed=seed, level=level)


def coverage(lists: Sequence[Sequence[Any]], catalogue_size: int) -> float:
    """Share of the catalogue recommended to anyone. No interval: the distinct items of a
    resample of users undercount the real ones, so a bootstrap interval would be biased."""
    if catalogue_size <= 0:
        return math.nan
    return len({item for items in lists for item in items}) / catalogue_size
