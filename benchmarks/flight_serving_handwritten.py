"""The baseline of ``benchmarks/flight_serving.py``: the MovieLens v2 recommendations as a
hand-written FastAPI endpoint doing the same pandas work a careful data scientist would
write, with the same source functions as the Flight example (``movielens_operators``).

    cd benchmarks && PYTHONPATH=../examples/movielens uvicorn flight_serving_handwritten:app
    GET /recs/for_user?user_id=1

The steps mirror ``examples/movielens/pipelines/recommend_v2.yaml``: three sources merged by
movieId (first source with a value wins), minus what the user rated, movie attributes
joined, two thresholds, a min-max weighted score, at most two per main genre taken round by
round, ten items, best first. No tracing, no metrics, no logs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import movielens_operators as ml
import numpy as np
import pandas as pd
from fastapi import FastAPI, Query
from fastapi.responses import Response

COLUMNS = ["movieId", "title", "main_genre", "year", "score"]
WEIGHTS = {"similarity": 0.6, "genre_affinity": 0.2, "mean_rating": 0.2}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await asyncio.to_thread(ml.load)
    yield


app = FastAPI(lifespan=lifespan)


def _minmax(x: pd.Series) -> pd.Series:
    lo, hi = x.min(), x.max()
    if pd.isna(lo) or hi == lo:
        return pd.Series(np.where(x.isna(), np.nan, 0.0), index=x.index)
    return (x - lo) / (hi - lo)


def recommend(user_id: int) -> pd.DataFrame:
    data = ml.load()
    sources = [
        ml.popular(data, 300),
        ml.favorite_genres(data, user_id, 200, 3),
        ml.similar_to_recent(data, user_id, 300, 10),
    ]
    ids = pd.concat([s["movieId"] for s in sources]).drop_duplicates()
    cand = pd.DataFrame({"movieId": ids.to_numpy()})
    for source in sources:
        cand = cand.merge(source, on="movieId", how="left")
    cand = cand[~cand["movieId"].isin(ml.rated(data, user_id))]
    attributes = data.movies[
        ["movieId", "title", "main_genre", "year", "num_ratings", "mean_rating"]
    ]
    cand = cand.merge(attributes, on="movieId", how="left")
    cand = cand[cand["num_ratings"].between(10, 100)]
    cand = cand[cand["mean_rating"] >= 3.5]
    score = sum(w * _minmax(cand[c].astype(float)).fillna(0.0) for c, w in WEIGHTS.items())
    cand = cand.assign(score=score).sort_values("score", ascending=False, kind="stable")
    cand = cand.assign(rank=cand.groupby("main_genre", sort=False).cumcount())
    cand = cand[cand["rank"] < 2]
    top = cand.sort_values("rank", kind="stable").head(10)
    return top.sort_values("score", ascending=False, kind="stable")[COLUMNS]


def _plain(values: pd.Series) -> list[Any]:
    return [None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in values]


@app.get("/recs/for_user")
async def for_user(user_id: int = Query(ge=1)) -> Response:
    items = recommend(user_id)
    body = {c: _plain(items[c]) for c in COLUMNS}
    return Response(json.dumps(body), media_type="application/json")
