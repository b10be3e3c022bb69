"""Array helpers shared by the built-in operators (vectorized, no per-row Python)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from flight.candidates import Array, Rows

__all__ = ["group_codes", "isin", "rank_within_groups", "stable_argsort"]


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
        n_groups = len(values.categories) + 1
        wide = np.int16 if n_groups < 2**15 else np.int64
        codes: np.ndarray[Any, Any] = values.codes.astype(wide) + 1  # missing (-1) is 0
        return codes
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


def stable_argsort(values: np.ndarray[Any, Any], desc: bool = False) -> Rows:
    """Positions that sort ``values`` (NaN last); equal values keep their order.

    numpy's default sort is several times faster than its stable one on floats, so sort
    unstably, then restore the original order inside runs of equal values (usually none).
    """
    key = -values if desc else values
    order: Rows = np.argsort(key).astype(np.intp, copy=False)
    n = len(order)
    if n < 2:
        return order
    ordered = key[order]
    same = ordered[1:] == ordered[:-1]
    if ordered.dtype.kind == "f":
        nan = np.isnan(ordered)
        same |= nan[1:] & nan[:-1]
    if not same.any():
        return order
    starts = np.flatnonzero(np.r_[True, ~same])
    lengths = np.diff(np.r_[starts, n])
    run = np.repeat(np.arange(len(starts)), lengths)
    tied = np.repeat(lengths > 1, lengths)
    sub = order[tied]
    order[tied] = sub[np.lexsort((sub, run[tied]))]
    return order
