"""Operators that learn from the ``clicks`` interactions, read through ``flight.data`` (the
way ``flight eval`` needs): popularity, "what this user clicked" and a per-user favourite
category. ``VISIBLE`` records every (user, item) pair an operator could see."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

import flight
import flight.operators as fo

VISIBLE: set[tuple[int, int]] = set()
BUILDS: list[int] = []  # rows of each view ``derived`` built from


def _read() -> pd.DataFrame:
    return pd.read_csv(os.environ["EVAL_CLICKS"])


flight.register_interactions("clicks", _read, replace=True)


def _popularity(frame: pd.DataFrame) -> pd.Series:
    BUILDS.append(len(frame))
    return frame.groupby("item")["user"].nunique().sort_values(ascending=False, kind="stable")


def _record(frame: pd.DataFrame) -> None:
    VISIBLE.update(zip(frame["user"].tolist(), frame["item"].tolist(), strict=True))


class EvalPopular(fo.SourceOperator):
    """The ``n`` items most users clicked."""

    n: int = 5

    async def __call__(self, **ctx: Any) -> fo.Source:
        popular = flight.derived("clicks", _popularity)
        return fo.Source(
            pd.DataFrame(
                {"item": popular.index[: self.n], "popularity": popular.to_numpy()[: self.n]}
            )
        )


class EvalClicked(fo.SourceOperator):
    """What the user clicked (an exclude)."""

    async def __call__(self, user_id: int, **ctx: Any) -> fo.Source:
        frame = flight.interactions("clicks")
        _record(frame)
        return fo.Source(frame.loc[frame["user"] == user_id, "item"].to_numpy(dtype=np.int64))
