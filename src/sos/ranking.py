"""Comparing what two revisions answer to the same request: the shadow report's math.

For every mirrored request the data path hands ``ShadowTally.add`` the primary's and the
shadow's answer (status, latency, body). Status codes and latency are compared for any
service; for JSON answers that carry an item list the rankings are compared too. Where the
ids are: a configured path (``movieId``, ``data.recs[].id``), else Flight's answer
(``Result.to_dict()``: one list per returned column, the item key first, next to
``reason``, ``warnings``, ``partial`` and ``cut``), else ``items[].item_id`` or
``items[].id``:

- overlap@k: the share of the primary's top k also in the shadow's top k;
- rank-biased overlap (RBO, Webber et al. 2010, the extrapolated form, p=0.9): agreement
  weighted towards the top, 1 for identical rankings, 0 for disjoint ones;
- top-1 agreement: both put the same item first;
- empty-result rates: how often each answered an empty list.

Pure: no I/O, no clock (latencies come in). ``ShadowTally.report`` gives the API's model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sos.models import ShadowComparison

__all__ = ["DEFAULT_K", "ShadowTally", "items_at", "overlap_at_k", "rbo"]

DEFAULT_K = 10
#: the keys Flight's ``Result.to_dict()`` puts next to its columns
FLIGHT_META = frozenset({"reason", "warnings", "partial", "cut", "debug"})
#: item lists of other common shapes, tried when no path is configured
OTHER_PATHS = ("items[].item_id", "items[].id")
#: latency samples kept per side for the medians (the newest)
_LATENCIES = 2048


def items_at(document: Any, path: str) -> list[str] | None:
    """The values at ``path`` as strings (``items[].item_id``: a list, then a field of each
    element; ``movieId``: a list of ids), or None when the document does not have that
    shape."""
    values: list[Any] = [document]
    for part in path.split("."):
        many = part.endswith("[]")
        name = part[:-2] if many else part
        found: list[Any] = []
        for value in values:
            if not isinstance(value, dict) or name not in value:
                return None
            inner = value[name]
            if many:
                if not isinstance(inner, list):
                    return None
                found.extend(inner)
            else:
                found.append(inner)
        values = found
    if len(values) == 1 and isinstance(values[0], list):  # the path ends at a list of ids
        values = values[0]
    if any(isinstance(v, (dict, list)) or v is None for v in values):
        return None
    return [str(v) for v in values]


def _items(body: bytes, path: str | None) -> list[str] | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if path:
        return items_at(document, path)
    if isinstance(document, dict) and set(document) | {"debug"} >= FLIGHT_META:
        columns = [key for key in document if key not in FLIGHT_META]
        if columns:  # Flight: the first returned column is the item key
            return items_at(document, columns[0])
    for candidate in OTHER_PATHS:
        found = items_at(document, candidate)
        if found is not None:
            return found
    return None


def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int = DEFAULT_K) -> float:
    """|top k of a ∩ top k of b| / k (1.0 when both are empty)."""
    top_a, top_b = set(a[:k]), set(b[:k])
    if not top_a and not top_b:
        return 1.0
    return len(top_a & top_b) / k


def rbo(a: Sequence[str], b: Sequence[str], p: float = 0.9) -> float:
    """Extrapolated rank-biased overlap of two rankings (1.0: identical, 0.0: disjoint;
    1.0 when both are empty). Rankings of different lengths are compared to the shorter
    one's depth, then extrapolated, as RBO_ext does for uneven lists."""
    if not a and not b:
        return 1.0
    depth = min(len(a), len(b))
    if depth == 0:
        return 0.0
    seen_a: set[str] = set()
    seen_b: set[str] = set()
    overlap = 0
    total = 0.0
    for d in range(1, depth + 1):
        x, y = a[d - 1], b[d - 1]
        if x == y:
            overlap += 1
        else:
            overlap += (x in seen_b) + (y in seen_a)
        seen_a.add(x)
        seen_b.add(y)
        total += (overlap / d) * p ** (d - 1)
    return min(1.0, (1 - p) * total + (overlap / depth) * p**depth)


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return round(ordered[middle], 3)
    return round((ordered[middle - 1] + ordered[middle]) / 2, 3)


@dataclass
class ShadowTally:
    """What one (primary, shadow) pair answered so far."""

    primary: str
    shadow: str
    items_path: str | None = None
    k: int = DEFAULT_K
    mirrored: int = 0
    dropped: int = 0
    compared: int = 0
    same_status: int = 0
    shadow_errors: int = 0
    items_compared: int = 0
    overlap_sum: float = 0.0
    rbo_sum: float = 0.0
    top1_same: int = 0
    primary_empty: int = 0
    shadow_empty: int = 0
    primary_ms: list[float] = field(default_factory=list)
    shadow_ms: list[float] = field(default_factory=list)

    def add(
        self,
        primary: tuple[int, float, bytes],
        shadow: tuple[int, float, bytes] | None,
    ) -> None:
        """One mirrored request: (status, latency ms, body) of each side; ``shadow`` None
        when the shadow gave no answer (an error, a time-out)."""
        self.compared += 1
        status, ms, body = primary
        self._keep(self.primary_ms, ms)
        if shadow is None:
            self.shadow_errors += 1
            return
        s_status, s_ms, s_body = shadow
        self._keep(self.shadow_ms, s_ms)
        if s_status >= 500:
            self.shadow_errors += 1
        if s_status // 100 == status // 100:
            self.same_status += 1
        if status >= 300 or s_status >= 300:
            return
        mine, theirs = _items(body, self.items_path), _items(s_body, self.items_path)
        if mine is None or theirs is None:
            return
        self.items_compared += 1
        self.overlap_sum += overlap_at_k(mine, theirs, self.k)
        self.rbo_sum += rbo(mine, theirs)
        self.top1_same += bool(mine and theirs and mine[0] == theirs[0]) or (
            not mine and not theirs
        )
        self.primary_empty += not mine
        self.shadow_empty += not theirs

    @staticmethod
    def _keep(values: list[float], ms: float) -> None:
        values.append(ms)
        if len(values) > _LATENCIES:
            del values[: len(values) - _LATENCIES]

    def report(self) -> ShadowComparison:
        n, items = self.compared, self.items_compared
        return ShadowComparison(
            primary=self.primary,
            shadow=self.shadow,
            mirrored=self.mirrored,
            dropped=self.dropped,
            compared=n,
            status_agreement=round(self.same_status / n, 4) if n else None,
            shadow_errors=self.shadow_errors,
            primary_p50_ms=_median(self.primary_ms),
            shadow_p50_ms=_median(self.shadow_ms),
            items_compared=items,
            k=self.k,
            overlap_at_k=round(self.overlap_sum / items, 4) if items else None,
            rbo=round(self.rbo_sum / items, 4) if items else None,
            top1_agreement=round(self.top1_same / items, 4) if items else None,
            primary_empty_rate=round(self.primary_empty / items, 4) if items else None,
            shadow_empty_rate=round(self.shadow_empty / items, 4) if items else None,
        )
