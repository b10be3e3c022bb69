"""Splitting interactions per user by time: the last ``holdout`` of each user are held out."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from flight.errors import FlightError

__all__ = ["EvalInputError", "Split", "split_by_time"]


class EvalInputError(FlightError):
    """The interactions or the evaluation settings cannot be used (says which and why)."""


@dataclasses.dataclass(frozen=True)
class Split:
    """The training interactions, the held-out ones, and who is evaluated.

    ``train``: every interaction of users not evaluated, and all but the last ``holdout``
    of each evaluated user. ``test``: those last ``holdout`` (by time, ties broken by the
    order in the file). ``relevant``: per evaluated user, the held-out items that count as
    hits (all of them, or those rated at least ``min_rating``). ``users``: the evaluated
    users (at least ``holdout + min_train`` interactions and one relevant held-out item),
    in ascending order.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    relevant: dict[Any, frozenset[Any]]
    users: list[Any]
    user: str
    item: str
    holdout: int
    min_train: int
    skipped_short: int  # users with too little history, kept whole in train
    skipped_no_relevant: int  # users whose held-out items were all below min_rating

    def rule(self) -> str:
        """The split in one sentence, for people (printed by ``flight eval``)."""
        return (
            f"per user, the last {self.holdout} interactions by time are held out when the "
            f"user has at least {self.holdout + self.min_train} ({self.min_train} left to "
            f"train on); {len(self.users)} users evaluated, {self.skipped_short} with less "
            f"history kept whole in training"
            + (
                f", {self.skipped_no_relevant} without a relevant held-out item skipped"
                if self.skipped_no_relevant
                else ""
            )
        )


def split_by_time(
    frame: pd.DataFrame,
    *,
    user: str,
    item: str,
    time: str,
    holdout: int,
    min_train: int = 1,
    rating: str | None = None,
    min_rating: float | None = None,
) -> Split:
    """Hold out each user's last ``holdout`` interactions (see :class:`Split`)."""
    if holdout < 1:
        raise EvalInputError(f"--holdout must be at least 1, got {holdout}")
    if min_train < 1:
        raise EvalInputError(f"--min-train must be at least 1, got {min_train}")
    needed = [user, item, time] + ([rating] if rating else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise EvalInputError(
            f"the interactions have no column {', '.join(map(repr, missing))}; their columns "
            f"are {', '.join(map(str, frame.columns))} (choose with --user/--item/--time)"
        )
    if min_rating is not None and rating is None:
        raise EvalInputError("--min-rating needs --rating, the column holding the rating")
    if frame[[user, item]].isna().any().any():
        raise EvalInputError(f"the interactions have empty {user!r} or {item!r} values")
    ordered = frame.reset_index(drop=True)
    ordered = ordered.assign(_row=np.arange(len(ordered)))
    ordered = ordered.sort_values([user, time, "_row"], kind="stable")
    from_end = ordered.groupby(user, sort=False).cumcount(ascending=False).to_numpy()
    sizes = ordered.groupby(user, sort=False)[item].transform("size").to_numpy()
    eligible = sizes >= holdout + min_train
    held = eligible & (from_end < holdout)
    test = ordered[held].drop(columns="_row")
    train = ordered[~held].sort_values("_row").drop(columns="_row")
    hits = test if min_rating is None else test[test[str(rating)] >= min_rating]
    relevant = {u: frozenset(g.tolist()) for u, g in hits.groupby(user, sort=True)[item]}
    eligible_users = set(ordered.loc[eligible, user].unique().tolist())
    users: list[Any] = sorted(relevant)
    if not users:
        raise EvalInputError(
            f"no user can be evaluated: none has {holdout + min_train} interactions"
            + (" with a relevant held-out item" if min_rating is not None else "")
            + "; lower --holdout or --min-train"
        )
    return Split(
        train=train.reset_index(drop=True),
        test=test.reset_index(drop=True),
        relevant=relevant,
        users=users,
        user=user,
        item=item,
        holdout=holdout,
        min_train=min_train,
        skipped_short=int(ordered[user].nunique()) - len(eligible_users),
        skipped_no_relevant=len(eligible_users) - len(users),
    )
