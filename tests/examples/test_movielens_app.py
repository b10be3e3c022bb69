"""The MovieLens recommender served as users reach it: over HTTP on a real socket, v1 and v2
side by side, validation errors, the pipeline engine endpoint, metrics; and its project
files are what `sos build` needs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import movielens_app
import movielens_operators as ml
import pytest
from serving_helpers import ServerThread

from flight import register_provider
from sos.ranking import ShadowTally

pytestmark = pytest.mark.skipif(
    not (ml.data_dir() / "ratings.csv").is_file(),
    reason=f"MovieLens data not found at {ml.data_dir()} (set MOVIELENS_DIR)",
)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    register_provider("movieId", ml.movie_attributes, replace=True)
    server = ServerThread(movielens_app.app).start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
    server.stop()


def titles(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return list(r.json()["title"])


def test_recommendations_for_a_user_from_v1_and_v2(http: httpx.Client) -> None:
    v1 = titles(http.get("/recs/for_user", params={"user_id": 1}))
    v2 = titles(http.get("/recs/for_user", params={"user_id": 1, "version": "v2"}))
    assert len(v1) == len(v2) == 10
    assert len(set(v1) & set(v2)) <= 2  # a person sees two different lists
    assert titles(http.post("/recs/for_user", json={"user_id": 1, "version": "v2"})) == v2
    rated = set(ml.load().rated[1].tolist())
    body = http.get("/recs/for_user", params={"user_id": 1}).json()
    assert not rated & set(body["movieId"])


def test_bad_requests_name_the_parameter(http: httpx.Client) -> None:
    r = http.get("/recs/for_user", params={"user_id": 0, "version": "v9"})
    assert r.status_code == 422
    problems = {p["parameter"]: p["message"] for p in r.json()["problems"]}
    assert problems["user_id"] == "Input should be greater than or equal to 1"
    assert "v1" in problems["version"] and "v2" in problems["version"]


def test_pipeline_context_is_validated_before_anything_runs(http: httpx.Client) -> None:
    r = http.post("/pipelines/recommend_v1/execute", json={"user_id": "abc"})
    assert r.status_code == 422  # the caller's mistake, not a failing source (503)
    assert [(p["parameter"], p["in"]) for p in r.json()["problems"]] == [("user_id", "body")]
    assert http.get("/pipelines/recommend_v1").json()["context"]["declared"] == {
        "user_id": {"type": "int", "required": True}
    }


def test_popular_movies_for_visitors(http: httpx.Client) -> None:
    body = http.get("/recs/popular").json()
    assert len(body["title"]) == 10 and min(body["mean_rating"]) >= 3.8


def test_pipelines_are_served_from_the_configs_folder(http: httpx.Client) -> None:
    listing = http.get("/pipelines").json()["pipelines"]
    assert [(p["name"], p["status"]) for p in listing] == [
        ("cold_start", "ok"),
        ("recommend_v1", "ok"),
        ("recommend_v2", "ok"),
        ("recommend_v3", "ok"),
    ]
    detail = http.get("/pipelines/recommend_v2").json()
    assert detail["context"]["required"] == ["user_id"]
    assert [o["name"] for o in detail["operators"] if o["role"] == "include"] == [
        "PopularMovies",
        "FavoriteGenreMovies",
        "SimilarToRecent",
    ]
    r = http.post("/pipelines/recommend_v2/execute?debug=true", json={"user_id": 1})
    assert r.json()["debug"][-1]["name"] == "Sort"
    assert titles(r) == titles(http.get("/recs/for_user", params={"user_id": 1, "version": "v2"}))


def test_metrics_show_every_operator_of_the_example(http: httpx.Client) -> None:
    http.get("/recs/for_user", params={"user_id": 2, "version": "v2"})
    text = http.get("/metrics").text
    for operator in ("SimilarToRecent", "AlreadyRated", "DiverseSample"):
        assert f'operator="{operator}",pipeline="recommend_v2"' in text


def test_project_is_what_sos_build_expects() -> None:
    from sos.build.api import inspect_project

    root = Path(movielens_app.__file__).parent
    project = inspect_project(root)
    assert (project.builder, project.name, project.version) == ("python", "movielens-recs", "1.0.0")
    assert project.entry_point == "movielens_app:app"
    deps = project.details["dependencies"]
    local = [d for d in deps if d.local_path is not None]
    assert [d.local_path for d in local] == [root.parents[1]]  # flight-sos from this repository
    assert all(d.local_path is not None or "==" in d.line for d in deps)


def test_a_shadow_report_compares_v1_and_v2_answers_of_the_example(http: httpx.Client) -> None:
    """The shadow report's ranking math on real Flight answers: v2 against v1 for 20 users
    (the data path's part is in tests/sos/runtime/local/test_local_experiments.py)."""
    against_v2 = ShadowTally("movielens-00001", "movielens-00002", k=10)
    against_itself = ShadowTally("movielens-00001", "movielens-00003", k=10)
    for user in range(1, 21):
        v1 = http.get("/recs/for_user", params={"user_id": user})
        v2 = http.get("/recs/for_user", params={"user_id": user, "version": "v2"})
        assert v1.status_code == v2.status_code == 200
        against_v2.add((200, 5.0, v1.content), (200, 7.0, v2.content))
        against_itself.add((200, 5.0, v1.content), (200, 5.0, v1.content))
    differs, same = against_v2.report(), against_itself.report()
    assert differs.items_compared == same.items_compared == 20
    assert (same.overlap_at_k, same.rbo, same.top1_agreement) == (1.0, 1.0, 1.0)
    assert differs.overlap_at_k is not None and differs.overlap_at_k <= 0.2  # v2 is another list
    assert differs.rbo is not None and 0 <= differs.rbo < 0.5
    assert differs.primary_empty_rate == differs.shadow_empty_rate == 0.0
