"""The MovieLens example's learned model: implicit ALS (``implicit``), used by
``recommend_v3``.

Train it (a few seconds) on the same training split ``flight eval`` uses, so that its
evaluation is honest (the model never saw a held-out rating)::

    python examples/movielens/movielens_model.py --holdout 5      # -> examples/movielens/models/als

It writes ``factors.npz`` (user and item factors with their ids) and ``model.json`` (version,
digest, the library and parameters, the hash of every rating it learnt from). Serving needs
only numpy: a user's scores are one matrix-vector product. ``sos build`` packs ``models/``
into the artifact, so a revision carries its model and a rollback rolls the model back too.

Operators:

- ``ALSCandidates(model, n)``: the user's ``n`` best-scored movies (``als_score``); none for a
  user the model does not know.
- ``ALSScore(model, output)``: a ``fo.ModelScore`` step scoring every candidate for the user
  in one call (fail-open: on a missing model or a timeout, the previous ``output`` stays).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import movielens_operators as ml
import numpy as np
import pandas as pd

import flight.operators as fo
from flight.evaluation import split_by_time
from flight.models import LoadedModel, check_trained_within, load_model, save_model

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = "models/als"


@dataclasses.dataclass(frozen=True)
class Factors:
    """User and item factors of a trained ALS model, indexed by MovieLens ids."""

    users: dict[int, int]  # userId -> row of user_factors
    items: pd.Index  # movieId of each row of item_factors
    user_factors: np.ndarray[Any, Any]
    item_factors: np.ndarray[Any, Any]

    @classmethod
    def read(cls, path: Path) -> Factors:
        with np.load(path / "factors.npz") as f:
            user_ids = f["user_ids"]
            return cls(
                users={int(u): i for i, u in enumerate(user_ids.tolist())},
                items=pd.Index(f["item_ids"]),
                user_factors=f["user_factors"],
                item_factors=f["item_factors"],
            )

    def user_vector(self, user_id: int) -> np.ndarray[Any, Any] | None:
        row = self.users.get(int(user_id))
        return None if row is None else self.user_factors[row]

    def scores(self, user_id: int, movie_ids: Any) -> np.ndarray[Any, Any]:
        """The model's score of each movie for the user (NaN for movies it does not know)."""
        ids = np.asarray(movie_ids)
        vector = self.user_vector(user_id)
        out = np.full(len(ids), np.nan)
        if vector is None:
            return out
        rows = self.items.get_indexer(ids)
        known = rows >= 0
        out[known] = self.item_factors[rows[known]] @ vector
        return out

    def top(self, user_id: int, n: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        vector = self.user_vector(user_id)
        if vector is None:
            return np.empty(0, dtype=np.int64), np.empty(0)
        scores = self.item_factors @ vector
        n = min(n, len(scores))
        best = np.argpartition(-scores, n - 1)[:n] if n else np.empty(0, dtype=np.intp)
        best = best[np.argsort(-scores[best], kind="stable")]
        return self.items.to_numpy()[best], scores[best]


def model(path: str = DEFAULT_MODEL) -> LoadedModel:
    """The model at ``path`` (relative to this example), loaded once per process, checked
    against the ratings the pipeline may see now."""
    where = Path(path)
    found = load_model(where if where.is_absolute() else HERE / where, Factors.read)
    check_trained_within(found)
    return found


class ALSCandidates(fo.SourceOperator):
    """The user's ``n`` best movies by the ALS model, with ``als_score``."""

    model: str = DEFAULT_MODEL
    n: int = 300

    def __call__(self, user_id: int, **ctx: Any) -> fo.Source:
        ids, scores = model(self.model).value.top(user_id, self.n)
        return fo.Source(pd.DataFrame({"movieId": ids, "als_score": scores}))


class ALSScore(fo.ModelScore):
    """Every candidate's ALS score for the user, in one matrix-vector product."""

    models_dir = HERE

    def load(self, path: Path) -> Factors:
        return Factors.read(path)

    def score(self, model: Factors, df: pd.DataFrame, user_id: int, **ctx: Any) -> Any:
        return model.scores(user_id, df["movieId"].to_numpy())


def train(
    ratings: pd.DataFrame,
    out: Path,
    *,
    holdout: int,
    factors: int = 64,
    iterations: int = 20,
    regularization: float = 0.05,
    alpha: float = 2.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Train ALS on ``ratings`` minus each user's last ``holdout`` (``flight eval``'s split;
    ``holdout=0`` trains on everything) and save it in ``out``."""
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    if holdout > 0:
        split = split_by_time(
            ratings, user="userId", item="movieId", time="timestamp", holdout=holdout
        )
        train_frame, rule = split.train, split.rule()
    else:
        train_frame, rule = ratings, "every rating (no hold-out)"
    users = pd.Index(np.sort(train_frame["userId"].unique()))
    items = pd.Index(np.sort(train_frame["movieId"].unique()))
    matrix = sp.csr_matrix(
        (
            np.ones(len(train_frame), dtype=np.float32),
            (users.get_indexer(train_frame["userId"]), items.get_indexer(train_frame["movieId"])),
        ),
        shape=(len(users), len(items)),
    )
    with threadpool_limits(1, "blas"):  # implicit's own threads, not BLAS's, do the work
        als = AlternatingLeastSquares(
            factors=factors,
            iterations=iterations,
            regularization=regularization,
            alpha=alpha,
            random_state=seed,
        )
        als.fit(matrix, show_progress=False)

    def write(where: Path) -> None:
        np.savez(
            where / "factors.npz",
            user_ids=users.to_numpy(),
            item_ids=items.to_numpy(),
            user_factors=np.asarray(als.user_factors, dtype=np.float32),
            item_factors=np.asarray(als.item_factors, dtype=np.float32),
        )

    params = {
        "factors": factors,
        "iterations": iterations,
        "regularization": regularization,
        "alpha": alpha,
        "seed": seed,
        "holdout": holdout,
    }
    return save_model(
        out,
        name="als",
        write=write,
        library=f"implicit {metadata.version('implicit')}",
        params=params,
        trained_on=("ratings", train_frame, "userId", "movieId"),
        extra={"split": rule},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holdout", type=int, default=5, help="as flight eval's (0: all data)")
    parser.add_argument("--out", type=Path, default=HERE / DEFAULT_MODEL)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when --out already holds a model"
    )
    args = parser.parse_args(argv)
    # the data goes into the artifact with the model (an instance reads no host path)
    print(f"data packed into {ml.pack_data()}")
    if args.if_missing and (args.out / "model.json").is_file():
        print(f"model already in {args.out}")
        return 0
    ratings = ml.read_ratings(ml.data_dir())
    meta = train(
        ratings,
        args.out,
        holdout=args.holdout,
        factors=args.factors,
        iterations=args.iterations,
        seed=args.seed,
    )
    print(f"trained {meta['name']} {meta['version']} ({meta['library']}) on {meta['split']}")
    print(f"saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
