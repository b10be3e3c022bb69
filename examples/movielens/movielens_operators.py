"""Operators for the MovieLens example recommender, shared by every pipeline in ``pipelines/``.

The data (``movies.csv`` and ``ratings.csv`` of MovieLens "ml-latest-small") is read once per
process from ``$MOVIELENS_DIR``, by default ``../shared/data/movielens-small`` next to the
repository. It is not copied into the repository or into a built artifact: its
``README.txt`` licence (research and non-commercial use, acknowledge GroupLens) travels with
the data.

Sources (each returns the columns it knows, merged by ``movieId`` by the engine). The work
is in plain functions (``popular``, ``favorite_genres``, ``similar_to_recent``, ``rated``)
that the operators wrap, so the same work can be timed without Flight
(``benchmarks/flight_serving.py``):

- ``PopularMovies(n)``: the most rated movies, with ``popularity`` (rating count, 0..1).
- ``FavoriteGenreMovies(n, genres)``: popular movies in the user's ``genres`` favourite genres,
  with ``genre_affinity`` (share of the user's liked movies in that genre).
- ``SimilarToRecent(n, recent)``: movies liked by people who liked the user's ``recent`` last
  liked movies (co-occurrence), with ``similarity`` (0..1).
- ``AlreadyRated()``: what the user has rated (an exclude).

The ``movieId`` attribute provider serves ``title``, ``genres``, ``main_genre``, ``year``,
``num_ratings`` and ``mean_rating`` to ``fo.Hydrate``. All of it is in memory, so the
sources are ``async def`` (no worker thread per call).
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import flight
import flight.operators as fo

__all__ = [
    "ATTRIBUTES",
    "AlreadyRated",
    "FavoriteGenreMovies",
    "MovieLens",
    "PopularMovies",
    "SimilarToRecent",
    "data_dir",
    "favorite_genres",
    "load",
    "load_async",
    "popular",
    "rated",
    "similar_to_recent",
]

LIKED = 4.0  # a rating at or above this counts as "liked"
ATTRIBUTES = ["movieId", "title", "genres", "main_genre", "year", "num_ratings", "mean_rating"]
_NONE = np.empty(0, dtype=np.int64)


def data_dir() -> Path:
    """``$MOVIELENS_DIR``, or ``../shared/data/movielens-small`` beside the repository."""
    env = os.environ.get("MOVIELENS_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return (repo / ".." / "shared" / "data" / "movielens-small").resolve()


@dataclass(frozen=True)
class MovieLens:
    """The data set, indexed for per-request lookups in a millisecond or two."""

    movies: pd.DataFrame  # movieId, title, genres, main_genre, year, num_ratings, mean_rating
    popular: np.ndarray[Any, Any]  # movieIds, most rated first
    popularity: np.ndarray[Any, Any]  # their rating counts over the largest count (0..1]
    by_genre: dict[str, np.ndarray[Any, Any]]  # genre -> movieIds, most rated first
    rated: dict[int, np.ndarray[Any, Any]]  # userId -> movieIds rated
    liked_recent: dict[int, np.ndarray[Any, Any]]  # userId -> liked movieIds, newest first
    likers: dict[int, np.ndarray[Any, Any]]  # movieId -> userIds who liked it
    user_genres: dict[int, pd.Series]  # userId -> genre -> share of liked movies

    @classmethod
    def read(cls, directory: Path) -> MovieLens:
        movies_csv, ratings_csv = directory / "movies.csv", directory / "ratings.csv"
        for path in (movies_csv, ratings_csv):
            if not path.is_file():
                raise FileNotFoundError(
                    f"MovieLens file {path} not found; set MOVIELENS_DIR to the folder holding "
                    f"movies.csv and ratings.csv (ml-latest-small)"
                )
        movies = pd.read_csv(movies_csv, dtype={"movieId": np.int64})
        ratings = pd.read_csv(ratings_csv, dtype={"userId": np.int64, "movieId": np.int64})
        stats = ratings.groupby("movieId")["rating"].agg(num_ratings="count", mean_rating="mean")
        movies = movies.join(stats, on="movieId")
        movies["num_ratings"] = movies["num_ratings"].fillna(0).astype(np.int64)
        movies["main_genre"] = movies["genres"].str.split("|").str[0]
        year = movies["title"].str.extract(r"\((\d{4})\)\s*$")[0]
        movies["year"] = pd.to_numeric(year, errors="coerce").astype("Int64")
        popular = movies.sort_values(["num_ratings", "movieId"], ascending=[False, True])
        counts = popular["num_ratings"].to_numpy()
        exploded = popular.assign(genre=popular["genres"].str.split("|")).explode("genre")
        genres = exploded.groupby("genre", sort=False)["movieId"]
        by_genre = {str(g): ids.to_numpy() for g, ids in genres}
        liked = ratings[ratings["rating"] >= LIKED].sort_values("timestamp", ascending=False)
        liked_genres = liked.merge(exploded[["movieId", "genre"]], on="movieId")
        user_genres = {
            int(u): g["genre"].value_counts(normalize=True)
            for u, g in liked_genres.groupby("userId")
        }
        return cls(
            movies=movies.reset_index(drop=True),
            popular=popular["movieId"].to_numpy(),
            popularity=counts / counts.max() if counts.max() else counts.astype(np.float64),
            by_genre=by_genre,
            rated={int(u): g.to_numpy() for u, g in ratings.groupby("userId")["movieId"]},
            liked_recent={int(u): g.to_numpy() for u, g in liked.groupby("userId")["movieId"]},
            likers={int(m): g.to_numpy() for m, g in liked.groupby("movieId")["userId"]},
            user_genres=user_genres,
        )


_lock = threading.Lock()
_cache: dict[Path, MovieLens] = {}


def load(directory: Path | None = None) -> MovieLens:
    """The data set, read once per process and directory (thread-safe)."""
    path = (directory or data_dir()).resolve()
    with _lock:
        if path not in _cache:
            _cache[path] = MovieLens.read(path)
        return _cache[path]


async def load_async() -> MovieLens:
    """:func:`load` without blocking the event loop: the first read runs in a worker thread
    (a served app reads the data at start-up; ``flight serve --configs`` on first use)."""
    found = _cache.get(data_dir().resolve())
    return found if found is not None else await asyncio.to_thread(load)


# -- the work, as plain functions ------------------------------------------------------------


def popular(data: MovieLens, n: int) -> pd.DataFrame:
    """The ``n`` most rated movies: movieId, popularity."""
    return pd.DataFrame({"movieId": data.popular[:n], "popularity": data.popularity[:n]})


def favorite_genres(data: MovieLens, user_id: int, n: int, genres: int) -> pd.DataFrame:
    """The ``n`` most rated movies of each of the user's ``genres`` favourite genres (best
    genre first, each movie once): movieId, genre_affinity."""
    shares = data.user_genres.get(int(user_id))
    if shares is None:
        return pd.DataFrame({"movieId": _NONE, "genre_affinity": np.empty(0)})
    top = shares.head(genres)
    ids = [data.by_genre[str(g)][:n] for g in top.index]
    ids_all = np.concatenate(ids)
    affinity = np.concatenate(
        [np.full(len(i), s) for i, s in zip(ids, top.to_numpy(), strict=True)]
    )
    _, first = np.unique(ids_all, return_index=True)
    keep = np.sort(first)
    return pd.DataFrame({"movieId": ids_all[keep], "genre_affinity": affinity[keep]})


def similar_to_recent(data: MovieLens, user_id: int, n: int, recent: int) -> pd.DataFrame:
    """Movies liked by people who liked the user's ``recent`` last liked movies, most
    co-liked first: movieId, similarity (co-likes over the top count)."""
    seeds = data.liked_recent.get(int(user_id), _NONE)[:recent]
    empty = pd.DataFrame({"movieId": _NONE, "similarity": np.empty(0)})
    if len(seeds) == 0:
        return empty
    neighbours = np.unique(np.concatenate([data.likers[int(m)] for m in seeds]))
    neighbours = neighbours[neighbours != int(user_id)]
    if len(neighbours) == 0:
        return empty
    liked = np.concatenate([data.liked_recent[int(u)] for u in neighbours])
    ids, counts = np.unique(liked, return_counts=True)
    keep = ~np.isin(ids, seeds)
    ids, counts = ids[keep], counts[keep]
    order = np.lexsort((ids, -counts))[:n]  # most co-liked first, then by id
    top = counts[order]
    return pd.DataFrame({"movieId": ids[order], "similarity": top / top[0] if len(top) else top})


def rated(data: MovieLens, user_id: int) -> np.ndarray[Any, Any]:
    """Every movie the user has rated."""
    return data.rated.get(int(user_id), _NONE)


# -- the operators ---------------------------------------------------------------------------


class PopularMovies(fo.SourceOperator):
    """The ``n`` most rated movies."""

    n: int = 300

    async def __call__(self, **ctx: Any) -> fo.Source:
        return fo.Source(popular(await load_async(), self.n))


class FavoriteGenreMovies(fo.SourceOperator):
    """The most rated movies in the user's ``genres`` favourite genres (none for new users)."""

    n: int = 300
    genres: int = 3

    async def __call__(self, user_id: int, **ctx: Any) -> fo.Source:
        return fo.Source(favorite_genres(await load_async(), user_id, self.n, self.genres))


class SimilarToRecent(fo.SourceOperator):
    """Movies liked by people who liked the user's ``recent`` last liked movies."""

    n: int = 200
    recent: int = 5

    async def __call__(self, user_id: int, **ctx: Any) -> fo.Source:
        return fo.Source(similar_to_recent(await load_async(), user_id, self.n, self.recent))


class AlreadyRated(fo.SourceOperator):
    """Every movie the user has rated: use as an exclude."""

    async def __call__(self, user_id: int, **ctx: Any) -> fo.Source:
        return fo.Source(rated(await load_async(), user_id))


def movie_attributes() -> flight.TableProvider:
    """The ``movieId`` attribute provider (what ``Hydrate`` reads)."""
    return flight.TableProvider(load().movies[ATTRIBUTES], key="movieId")


flight.register_provider("movieId", movie_attributes, replace=True)
