"""`flight eval` on the MovieLens example: the learned model of recommend_v3 (implicit ALS,
trained on flight eval's training split) beats v1 and v2 on ndcg@10, and a model trained on
everything (held-out ratings included) is refused instead of looking better than it is."""

from __future__ import annotations

from pathlib import Path

import movielens_model as mm
import movielens_operators as ml
import pytest
import yaml

from flight import Pipeline, register_provider
from flight.evaluation import evaluate, split_by_time

PIPELINES = Path(ml.__file__).resolve().parent / "pipelines"

pytestmark = pytest.mark.skipif(
    not (ml.data_dir() / "ratings.csv").is_file(),
    reason=f"MovieLens data not found at {ml.data_dir()} (set MOVIELENS_DIR)",
)


@pytest.fixture(autouse=True)
def _provider() -> None:
    register_provider("movieId", ml.movie_attributes, replace=True)


def config(name: str, tmp_path: Path, model: Path | None = None) -> Pipeline:
    """The example's config, with absolute imports and, for v3, the model at ``model``."""
    raw = yaml.safe_load((PIPELINES / f"{name}.yaml").read_text())
    raw["imports"] = [str((PIPELINES / i).resolve()) for i in raw["imports"]]
    for entry in [*raw["includes"], *raw["steps"]]:
        for args in entry.values():
            if isinstance(args, dict) and "model" in args and model is not None:
                args["model"] = str(model)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return Pipeline.from_config(path)


async def test_the_learned_model_beats_v1_and_v2_on_ndcg(tmp_path: Path) -> None:
    ratings = ml.read_ratings(ml.data_dir())
    meta = mm.train(ratings, tmp_path / "als", holdout=5)
    assert meta["library"].startswith("implicit ") and meta["trained_on"]["dataset"] == "ratings"
    split = split_by_time(ratings, user="userId", item="movieId", time="timestamp", holdout=5)
    pipelines = [
        (name, config(name, tmp_path, tmp_path / "als"))
        for name in ("recommend_v1", "recommend_v2", "recommend_v3")
    ]
    evaluation = await evaluate(pipelines, split, dataset="ratings", user_key="user_id", k=10)
    ndcg = {name: evaluation.metrics[name]["ndcg@10"].value for name, _ in pipelines}
    assert ndcg["recommend_v3"] > max(ndcg["recommend_v1"], ndcg["recommend_v2"])
    assert evaluation.compared["recommend_v3"]["ndcg@10"].low > 0  # a real difference
    assert sum(evaluation.runs[2].errors.values()) == 0
    assert evaluation.metrics["recommend_v3"]["users"] == 610


async def test_a_model_trained_on_everything_is_refused_by_the_evaluation(
    tmp_path: Path,
) -> None:
    ratings = ml.read_ratings(ml.data_dir())
    mm.train(ratings, tmp_path / "leaky", holdout=0, iterations=2)
    split = split_by_time(ratings, user="userId", item="movieId", time="timestamp", holdout=5)
    v3 = config("recommend_v3", tmp_path, tmp_path / "leaky")
    evaluation = await evaluate(
        [("recommend_v3", v3)], split, dataset="ratings", user_key="user_id", k=10
    )
    run = evaluation.runs[0]
    assert sum(run.errors.values()) == len(split.users)
    assert "held-out" in next(iter(run.errors))
    # served (no evaluation), the same model is fine
    result = await v3.execute(user_id=1)
    assert result.ok and len(result.items) == 10
