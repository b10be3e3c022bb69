"""The MovieLens example end to end, and the main job (`scripts/main`) as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "movielens"
sys.path.insert(0, str(EXAMPLE))

import movielens_operators as ml  # noqa: E402

from flight import Pipeline  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (ml.data_dir() / "ratings.csv").is_file(),
    reason=f"MovieLens data not found at {ml.data_dir()} (set MOVIELENS_DIR)",
)


@pytest.fixture(autouse=True)
def _provider() -> None:
    # the conftest resets providers after each test; the example registers one at import
    from flight import register_provider

    register_provider("movieId", ml._movie_attributes, replace=True)


async def test_recommendations_for_a_user_are_new_diverse_and_ranked() -> None:
    pipeline = Pipeline.from_config(EXAMPLE / "recommend.yaml")
    result = await pipeline.execute(user_id=1, debug=True)
    assert result.ok and result.reason is None
    items = result.items
    assert list(items.columns) == ["movieId", "title", "main_genre", "year", "score"]
    assert len(items) == 10
    rated = set(ml.load().rated[1].tolist())
    assert not rated & set(items["movieId"].tolist())  # the exclude worked
    assert items["main_genre"].value_counts().max() <= 3  # genre-diverse
    assert items["score"].is_monotonic_decreasing
    assert items["title"].notna().all()
    assert [s.name for s in result.stats][:4] == [
        "PopularMovies",
        "FavoriteGenreMovies",
        "SimilarToRecent",
        "AlreadyRated",
    ]
    assert all(s.status == "ok" for s in result.stats)


async def test_same_operators_serve_the_cold_start_config() -> None:
    pipeline = Pipeline.from_config(EXAMPLE / "cold_start.yaml")
    result = await pipeline.execute()
    assert len(result.items) == 10
    assert (result.items["mean_rating"] >= 3.8).all()
    assert result.items["main_genre"].value_counts().max() <= 2


async def test_unknown_user_still_gets_popular_movies() -> None:
    result = await Pipeline.from_config(EXAMPLE / "recommend.yaml").execute(user_id=999_999)
    assert len(result.items) == 10
    stats = {s.name: s.n_out for s in result.stats}
    assert stats["FavoriteGenreMovies"] == 0 and stats["AlreadyRated"] == 0


def test_missing_data_dir_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="set MOVIELENS_DIR"):
        ml.load(tmp_path)


def test_main_job_prints_recommendations_and_operator_log() -> None:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    proc = subprocess.run(
        [str(REPO / "scripts" / "main")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "movielens_recommend per-operator log:" in out
    assert "AlreadyRated() returned 232 items to exclude" in out  # user 1 rated 232 movies
    assert "DiverseSample(n=10, maximize='score', by='main_genre'" in out
    assert "Returning 10 items with mean(score)=" in out
    assert "10 items" in out and "movieId" in out
