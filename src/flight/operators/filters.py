"""Built-in filters: Match, Threshold, Head, Dedupe, LimitPerGroup."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from flight.candidates import Array, Candidates, Rows
from flight.errors import ExecuteError, OperatorArgumentError
from flight.operators.base import FilterOperator

__all__ = ["Dedupe", "Head", "LimitPerGroup", "Match", "Threshold", "group_codes"]

Scalar = str | int | float | bool


def isin(values: Array, wanted: Sequence[Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Boolean mask: which ``values`` are in ``wanted`` (fast for categoricals and numbers)."""
    if isinstance(values, pd.Categorical):
        hit = np.append(values.categories.isin(list(wanted)), False)
        found: np.ndarray[Any, np.dtype[np.bool_]] = hit[values.codes]
        return found  # code -1 (missing) hits the trailing False
    wanted_arr = np.asarray(list(wanted))
    if (
        isinstance(values, np.ndarray)
        and values.dtype.kind in "iufb"
        and wanted_arr.dtype.kind in "iufb"
    ):
        return np.isin(values, wanted_arr)
    return pd.Series(values, copy=False).isin(list(wanted)).to_numpy(dtype=bool)


def group_codes(values: Array) -> np.ndarray[Any, Any]:
    """Small non-negative integer codes of the groups in ``values`` (missing is a group)."""
    if isinstance(values, pd.Categorical):
        codes: np.ndarray[Any, Any] = values.codes.astype(np.int64) + 1
        n_groups = len(values.categories) + 1
    else:
        codes, uniques = pd.factorize(values, use_na_sentinel=False)  # type: ignore[arg-type]
        n_groups = len(uniques)
    return codes.astype(np.int16 if n_groups < 2**15 else np.int64, copy=False)


def rank_within_groups(codes: np.ndarray[Any, Any]) -> Rows:
    """For each row, its position among the rows of its group (in row order)."""
    n = len(codes)
    if n == 0:
        return np.empty(0, dtype=np.intp)
    by_group = np.argsort(codes, kind="stable")
    sorted_codes = codes[by_group]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    lengths = np.diff(np.r_[starts, n])
    ranks_sorted = np.arange(n, dtype=np.intp) - np.repeat(starts, lengths)
    ranks = np.empty(n, dtype=np.intp)
    ranks[by_group] = ranks_sorted
    return ranks


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
