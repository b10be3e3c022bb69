"""Small operators shared by the Flight tests (defined once, registered at import)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pandas as pd

import flight.operators as fo


class Items(fo.SourceOperator):
    """Static item ids, with one optional column of values."""

    ids: Sequence[int]
    column: str | None = None
    values: Sequence[float] = ()

    async def __call__(self, **ctx: Any) -> fo.Source:
        if self.column is None:
            return fo.Source(list(self.ids))
        return fo.Source(pd.DataFrame({"item": list(self.ids), self.column: list(self.values)}))


class SyncItems(fo.SourceOperator):
    """Like Items, but a plain ``def`` (the engine runs it in a worker thread)."""

    ids: Sequence[int]

    def __call__(self, **ctx: Any) -> fo.Source:
        return fo.Source(list(self.ids))


class Never(fo.SourceOperator):
    """Never returns (until cancelled): for timeouts."""

    async def __call__(self, **ctx: Any) -> fo.Source:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class KeepEven(fo.FilterOperator):
    """A user filter in the pandas idiom: keeps even item ids."""

    def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.Index:
        return df[df["item"] % 2 == 0].index


class AddDouble(fo.TransformOperator):
    """A user transform: ``double = 2 * item``."""

    def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.DataFrame:
        return df.assign(double=df["item"] * 2)


class UserItems(fo.SourceOperator):
    """Items ``user_id`` .. ``user_id + n - 1`` (needs context ``user_id``; ``n`` optional)."""

    async def __call__(self, user_id: int, n: int = 1, **ctx: Any) -> fo.Source:
        return fo.Source(list(range(user_id, user_id + n)))
