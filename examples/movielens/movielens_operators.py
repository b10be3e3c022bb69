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

import os
import shutil
import threading
from collections.abc import Sequence
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


#: the copy of the data that ``sos build`` packs into the artifact (``pack_data`` makes it)
PACKED = Path(__file__).resolve().parent / "data"
#: what is packed: the two files the operators read, and the data set's README (its licence
#: asks that it stays with every copy)
PACKED_FILES = ("movies.csv", "ratings.csv", "README.txt")


def data_dir() -> Path:
    """``$MOVIELENS_DIR``; else the copy packed beside this file (in the artifact: a
    deployed instance sees no path of the machine it was built on); else
    ``../shared/data/movielens-small`` beside the repository."""
    env = os.environ.get("MOVIELENS_DIR")
    if env:
        return Path(env)
    if (PACKED / "ratings.csv").is_file():
        return PACKED
    repo = Path(__file__).resolve().parents[2]
    return (repo / ".." / "shared" / "data" / "movielens-small").resolve()


def pack_data(source: Path | None = None) -> Path:
    """Copy the data set from ``source`` (``data_dir()``) into ``data/`` beside this file,
    which ``sos build`` packs into the artifact, so that a revision serves the data it was
    built with. Files already there with the same size are kept."""
    source = source or data_dir()
    if source.resolve() == PACKED:
        return PACKED
    PACKED.mkdir(exist_ok=True)
    for name in PACKED_FILES:
        origin, copy = source / name, PACKED / name
        if not origin.is_file():
            raise FileNotFoundError(
                f"MovieLens file {origin} not found; set MOVIELENS_DIR to the folder holding "
                "movies.csv, ratings.csv and README.txt (ml-latest-small)"
            )
        if not copy.is_file() or copy.stat().st_size != origin.stat().st_size:
            shutil.copyfile(origin, copy)
    return PACKED


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
        """Everything from the files in ``directory`` (``movies.csv``, ``ratings.csv``)."""
        return cls.build(read_movies(directory), read_ratings(directory))

    @classmethod
    def build(cls, movies: pd.DataFrame, ratings: pd.DataFrame) -> MovieLens:
        """Index the catalogue and the ratings (every statistic comes from ``ratings``, so
        under ``flight eval`` it comes from the training split only)."""
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


def _csv(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(
            f"MovieLens file {path} not found; set MOVIELENS_DIR to the folder holding "
            f"movies.csv and ratings.csv (ml-latest-small)"
        )
    return path


def read_movies(directory: Path) -> pd.DataFrame:
    return pd.read_csv(_csv(directory, "movies.csv"), dtype={"movieId": np.int64})


def read_ratings(directory: Path) -> pd.DataFrame:
    return pd.read_csv(
        _csv(directory, "ratings.csv"), dtype={"userId": np.int64, "movieId": np.int64}
    )


# The ratings are the example's interaction data set: every operator reads them through
# Flight (``flight.derived``), so ``flight eval`` can swap in the training split.
flight.register_interactions("ratings", lambda: read_ratings(data_dir()), replace=True)

_lock = threading.Lock()
_movies: dict[Path, pd.DataFrame] = {}


def _catalogue() -> pd.DataFrame:
    path = data_dir().resolve()
    with _lock:
        if path not in _movies:
            _movies[path] = read_movies(path)
        return _movies[path]


def _build(ratings: pd.DataFrame) -> MovieLens:
    return MovieLens.build(_catalogue(), ratings)


def load(directory: Path | None = None) -> MovieLens:
    """The data set: the catalogue and the current view of the ``ratings`` interactions
    (all of them when serving, the training split under ``flight eval``), built once per
    view. With ``directory``, everything is read from there instead (not cached)."""
    if directory is not None:
        return MovieLens.read(directory.resolve())
    return flight.derived("ratings", _build)


async def load_async() -> MovieLens:
    """:func:`load` without blocking the event loop: the first build runs in a worker thread
    (a served app builds it at start-up; ``flight serve --configs`` on first use)."""
    return await flight.aderived("ratings", _build)


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


def _attribute_table(ratings: pd.DataFrame) -> flight.TableProvider:
    return flight.TableProvider(_build(ratings).movies[ATTRIBUTES], key="movieId")


class MovieAttributes(flight.AttributeProvider):
    """The ``movieId`` attributes. ``num_ratings`` and ``mean_rating`` come from the current
    view of the ratings, so under ``flight eval`` they are training-split figures too."""

    item_type = "movieId"

    @property
    def columns(self) -> list[str]:
        return ATTRIBUTES[1:]

    def lookup(self, ids: Any, columns: Sequence[str]) -> dict[str, Any]:
        return flight.derived("ratings", _attribute_table).lookup(ids, columns)


def movie_attributes() -> flight.AttributeProvider:
    """The ``movieId`` attribute provider (what ``Hydrate`` reads)."""
    return MovieAttributes()


flight.register_provider("movieId", movie_attributes, replace=True)
