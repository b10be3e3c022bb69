"""Built-in filters: Match, Threshold, Head, Dedupe, LimitPerGroup."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from flight.candidates import Candidates, Rows
from flight.errors import ExecuteError, OperatorArgumentError
from flight.operators._arrays import group_codes, isin, rank_within_groups
from flight.operators.base import FilterOperator

__all__ = ["Dedupe", "Head", "LimitPerGroup", "Match", "Threshold"]

Scalar = str | int | float | bool


class Match(FilterOperator):
    """Keeps rows whose ``column`` is one of ``values``, or equals the request context value
    named by ``context`` (``Match("genre", context="genre")``). ``negate`` keeps the others."""

    column: str
    values: Sequence[Scalar] = ()
    context: str | None = None
    negate: bool = False

    def __post_init__(self) -> None:
        if bool(self.values) == bool(self.context):
            raise OperatorArgumentError(
                f"Match({self.column!r}): give values=[...] or context='key', exactly one"
            )

    def required_context(self) -> frozenset[str]:
        return frozenset({self.context}) if self.context else frozenset()

    def select(self, candidates: Candidates, ctx: Mapping[str, Any]) -> Rows:
        wanted: Sequence[Any] = self.values
        if self.context:
            if self.context not in ctx:
                raise ExecuteError(f"{self!r} needs context {self.context!r}")
            value = ctx[self.context]
            wanted = list(value) if isinstance(value, list | tuple | set) else [value]
        mask = isin(candidates.column(self.column), wanted)
        return np.flatnonzero(~mask if self.negate else mask)


class Threshold(FilterOperator):
    """Keeps rows with ``min <= column <= max`` (either bound may be left out); rows with a
    missing value are dropped."""

    column: str
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.min is None and self.max is None:
            raise OperatorArgumentError(f"Threshold({self.column!r}): give min=, max= or both")

    def select(self, candidates: Candidates, ctx: Mapping[str, Any]) -> Rows:
        x = candidates.numeric(self.column)
        with np.errstate(invalid="ignore"):
            mask = ~np.isnan(x)
            if self.min is not None:
                mask &= x >= self.min
            if self.max is not None:
                mask &= x <= self.max
        return np.flatnonzero(mask)


class Head(FilterOperator):
    """Keeps the first ``n`` rows."""

    n: Annotated[int, Field(ge=0)]

    def select(self, candidates: Candidates, ctx: Mapping[str, Any]) -> Rows:
        return np.arange(min(self.n, len(candidates)), dtype=np.intp)


class Dedupe(FilterOperator):
    """Keeps the first row of each distinct value of ``column`` (e.g. one item per title)."""

    column: str

    def select(self, candidates: Candidates, ctx: Mapping[str, Any]) -> Rows:
        dup = pd.Series(candidates.column(self.column), copy=False).duplicated(keep="first")
        return np.flatnonzero(~dup.to_numpy(dtype=bool))


class LimitPerGroup(FilterOperator):
    """Keeps at most ``n`` rows per value of ``by``, the first ones in the current order."""

    by: str
    n: Annotated[int, Field(ge=1)]

    def select(self, candidates: Candidates, ctx: Mapping[str, Any]) -> Rows:
        ranks = rank_within_groups(group_codes(candidates.column(self.by)))
        return np.flatnonzero(ranks < self.n)
