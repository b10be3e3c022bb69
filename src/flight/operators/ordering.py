"""Built-in sort and samplers: Sort, Shuffle, DiverseSample."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from flight.candidates import Candidates, Rows
from flight.operators._arrays import group_codes, rank_within_groups, stable_argsort
from flight.operators.base import SamplerOperator, SortOperator

__all__ = ["DiverseSample", "Shuffle", "Sort"]


class Sort(SortOperator):
    """Orders rows by ``by`` (ascending, or ``desc=True``); ties keep their order, missing
    values go last."""

    by: str
    desc: bool = False

    def select(self, candidates: Candidates, ctx: Mapping[str, Any]) -> Rows:
        values = candidates.column(self.by)
        if isinstance(values, np.ndarray) and values.dtype.kind in "iufb":
            return stable_argsort(values.astype(np.float64, copy=False), desc=self.desc)
        ordered = pd.Series(values, copy=False).reset_index(drop=True)
        ordered = ordered.sort_values(ascending=not self.desc, kind="stable", na_position="last")
        return ordered.index.to_numpy(dtype=np.intp)


class Shuffle(SamplerOperator):
    """Random order; ``seed`` makes it repeatable, otherwise the engine's generator is used."""

    seed: int | None = None

    def select(self, candidates: Candidates, ctx: Mapping[str, Any]) -> Rows:
        rng = np.random.default_rng(self.seed) if self.seed is not None else candidates.rng
        return rng.permutation(len(candidates)).astype(np.intp, copy=False)


class DiverseSample(SamplerOperator):
    """Picks ``n`` items that score high on ``maximize`` while spreading over ``by``.

    Without ``by`` it is the best ``n`` (with ``temperature``, a sample leaning to the best).
    Items are taken round-robin across the groups of ``by``: first the best item of every
    group (best groups first), then the second best of each, and so on; ``max_per_group``
    caps any one group. With ``temperature > 0`` scores are perturbed before ranking
    (Gumbel top-k: sampling without replacement with probability ~ exp(score/temperature)),
    which explores beyond the top; the same ``seed`` gives the same sample, and without a
    seed the engine's injected generator is used. ``temperature = 0`` is deterministic.
    """

    n: Annotated[int, Field(ge=0)]
    maximize: str
    by: str | None = None
    max_per_group: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0)] = 0.0
    seed: int | None = None

    def select(self, candidates: Candidates, ctx: Mapping[str, Any]) -> Rows:
        total = len(candidates)
        if total == 0 or self.n == 0:
            return np.empty(0, dtype=np.intp)
        score = candidates.numeric(self.maximize)
        score = np.where(np.isnan(score), -np.inf, score)
        if self.temperature > 0:
            rng = np.random.default_rng(self.seed) if self.seed is not None else candidates.rng
            score = score / self.temperature + rng.gumbel(size=total)
        order = stable_argsort(score, desc=True)  # best first, ties in candidate order
        if self.by is None:  # no groups: the best n (explored with temperature > 0)
            return order[: self.n]
        ranks = rank_within_groups(group_codes(candidates.column(self.by))[order])
        cap = self.n if self.max_per_group is None else min(self.n, self.max_per_group)
        eligible = np.flatnonzero(ranks < cap)
        rounds = ranks[eligible].astype(np.int16 if cap < 2**15 else np.int64, copy=False)
        picked = eligible[np.argsort(rounds, kind="stable")[: self.n]]
        return order[picked]
