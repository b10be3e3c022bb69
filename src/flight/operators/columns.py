"""Built-in transforms: Hydrate, WeightedScore, Rename."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Awaitable, Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from flight.candidates import Array, Candidates, as_array
from flight.errors import ProviderError, ResultShapeError
from flight.operators.base import TransformOperator, warn
from flight.providers import get_provider

__all__ = ["Hydrate", "Rename", "WeightedScore"]

Columns = Mapping[str, Array | None]


class Hydrate(TransformOperator):
    """Adds item attribute ``columns`` from an attribute provider (default: the one registered
    for the pipeline's item type). Existing columns of the same name are replaced."""

    columns: Annotated[Sequence[str], Field(min_length=1)]
    provider: str | None = None

    def transform(
        self, candidates: Candidates, ctx: Mapping[str, Any]
    ) -> Columns | Awaitable[Columns]:
        name = self.provider or candidates.item_type
        provider = get_provider(name)
        provider.check_columns(self.columns, name)
        keys = candidates.keys()
        codes = candidates.codes()
        interner = candidates.table.interner
        if codes is not None and interner is not None:
            found = provider.lookup_codes(interner, codes, keys, self.columns)
        else:
            found = provider.lookup(keys, self.columns)
        if inspect.isawaitable(found):
            return self._finish_async(found, len(candidates), name)
        return self._finish(found, len(candidates), name)

    async def _finish_async(self, pending: Awaitable[Any], n: int, name: str) -> Columns:
        return self._finish(await pending, n, name)

    def _finish(self, found: Any, n: int, name: str) -> Columns:
        out: dict[str, Array | None] = {}
        for column in self.columns:
            try:
                values = found[column]
            except KeyError:
                raise ProviderError(f"provider {name!r} returned no column {column!r}") from None
            arr = as_array(values)
            if len(arr) != n:
                raise ResultShapeError(
                    f"provider {name!r} returned {len(arr)} values of {column!r} for {n} items",
                    self,
                )
            out[column] = arr
        return out


class WeightedScore(TransformOperator):
    """``output = sum(weight * column)`` over ``weights``; missing values count as ``fillna``.

    ``normalize`` rescales each column over the current candidates first: ``minmax`` to
    [0, 1], ``rank`` to percentile ranks, ``none`` leaves values as they are. A column no
    source produced (a source returned nothing or an optional one was skipped) counts as all
    missing, with a warning naming it (in the log, ``flight run`` and ``result.warnings``);
    ``strict=True`` makes that an error instead.
    """

    weights: Annotated[Mapping[str, float], Field(min_length=1)]
    output: str = "score"
    normalize: Literal["none", "minmax", "rank"] = "none"
    fillna: float = 0.0
    strict: bool = False

    def transform(self, candidates: Candidates, ctx: Mapping[str, Any]) -> Columns:
        total = np.zeros(len(candidates), dtype=np.float64)
        for column, weight in self.weights.items():
            if column not in candidates and not self.strict:
                continue  # e.g. an optional source was skipped: all values missing
            x: np.ndarray[Any, Any] = candidates.numeric(column)
            if self.normalize == "minmax" and len(x):
                lo, hi = (
                    np.nanmin(x) if np.isfinite(x).any() else 0.0,
                    np.nanmax(x) if np.isfinite(x).any() else 0.0,
                )
                span = hi - lo
                x = (x - lo) / span if span > 0 else np.where(np.isnan(x), np.nan, 0.0)
            elif self.normalize == "rank":
                x = pd.Series(x, copy=False).rank(pct=True).to_numpy()
            total += weight * np.where(np.isnan(x), self.fillna, x)
        missing = [c for c in self.weights if c not in candidates]
        if missing and not self.strict:
            total += self.fillna * sum(self.weights[c] for c in missing)
            have = [c for c in candidates.columns if c != candidates.item_type]
            close = [m for c in missing for m in difflib.get_close_matches(c, have, 1)]
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
            warn(
                f"weights name {', '.join(map(repr, missing))}, which the candidates lack "
                f"(they have: {', '.join(have) or 'no columns'}); counted as {self.fillna:g} "
                f"(fillna). {hint}Fix the name, or set strict=True to make it an error"
            )
        return {self.output: total}


class Rename(TransformOperator):
    """Renames columns: ``Rename({"old": "new"})``. The item key column cannot be renamed."""

    columns: Annotated[Mapping[str, str], Field(min_length=1)]

    def transform(self, candidates: Candidates, ctx: Mapping[str, Any]) -> Columns:
        out: dict[str, Array | None] = {old: None for old in self.columns}
        out.update({new: candidates.column(old) for old, new in self.columns.items()})
        return out
