"""The MovieLens pipelines (v1, v2, cold start) as a data scientist runs them in Python."""

from __future__ import annotations

import asyncio
from pathlib import Path

import movielens_operators as ml
import pytest

from flight import Pipeline, register_provider

PIPELINES = Path(ml.__file__).resolve().parent / "pipelines"

pytestmark = pytest.mark.skipif(
    not (ml.data_dir() / "ratings.csv").is_file(),
    reason=f"MovieLens data not found at {ml.data_dir()} (set MOVIELENS_DIR)",
)


@pytest.fixture(autouse=True)
def _provider() -> None:
    register_provider("movieId", ml.movie_attributes, replace=True)


def load(name: str) -> Pipeline:
    return Pipeline.from_config(PIPELINES / f"{name}.yaml")


@pytest.mark.parametrize("name", ["recommend_v1", "recommend_v2"])
async def test_recommendations_are_new_diverse_and_ranked(name: str) -> None:
    result = await load(name).execute(user_id=1, debug=True)
    assert result.ok and result.reason is None
    items = result.items
    assert list(items.columns) == ["movieId", "title", "main_genre", "year", "score"]
    assert len(items) == 10
    rated = set(ml.load().rated[1].tolist())
    assert not rated & set(items["movieId"].tolist())  # the exclude worked
    per_genre = 3 if name == "recommend_v1" else 2
    assert items["main_genre"].value_counts().max() <= per_genre
    assert items["score"].is_monotonic_decreasing
    assert items["title"].notna().all()
    assert all(s.status == "ok" for s in result.stats)


async def test_v2_lists_differ_visibly_from_v1() -> None:
    v1, v2 = load("recommend_v1"), load("recommend_v2")
    shared = []
    for user in (1, 2, 3, 4, 5, 6, 7, 8):
        a, b = await asyncio.gather(v1.execute(user_id=user), v2.execute(user_id=user))
        shared.append(len(set(a.items["movieId"]) & set(b.items["movieId"])))
        movies = ml.load().movies.set_index("movieId")
        # v2 goes beyond the blockbusters: every pick has 10 to 100 ratings, v1's do not
        assert movies.loc[b.items["movieId"], "num_ratings"].between(10, 100).all()
        assert movies.loc[a.items["movieId"], "num_ratings"].max() > 100
    assert sum(shared) / len(shared) <= 2, shared  # at most two movies in ten in common


async def test_v2_uses_the_similar_to_recent_source() -> None:
    result = await load("recommend_v2").execute(user_id=1)
    similar = next(s for s in result.stats if s.name == "SimilarToRecent")
    assert similar.status == "ok" and similar.n_out == 300


async def test_same_operators_serve_the_cold_start_config() -> None:
    result = await load("cold_start").execute()
    assert len(result.items) == 10
    assert (result.items["mean_rating"] >= 3.8).all()
    assert result.items["main_genre"].value_counts().max() <= 2


async def test_unknown_user_still_gets_popular_movies() -> None:
    result = await load("recommend_v2").execute(user_id=999_999)
    assert len(result.items) > 0
    stats = {s.name: s.n_out for s in result.stats}
    assert stats["FavoriteGenreMovies"] == 0 and stats["AlreadyRated"] == 0
    assert stats["SimilarToRecent"] == 0


def test_missing_data_dir_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="set MOVIELENS_DIR"):
        ml.load(tmp_path)


def test_source_functions_match_what_the_operators_return() -> None:
    data = ml.load()
    top = ml.popular(data, 5)
    assert top["popularity"].iloc[0] == 1.0 and top["popularity"].is_monotonic_decreasing
    fav = ml.favorite_genres(data, 1, 50, 3)
    assert fav["movieId"].is_unique and fav["genre_affinity"].between(0, 1).all()
    similar = ml.similar_to_recent(data, 1, 20, 5)
    assert similar["similarity"].iloc[0] == 1.0 and len(similar) == 20
    assert not set(similar["movieId"]) & set(data.liked_recent[1][:5].tolist())
