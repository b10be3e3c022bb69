"""The MovieLens recommender as a service: ``flight serve movielens_app:app``.

- ``GET /recs/for_user?user_id=1`` (or ``POST`` ``{"user_id": 1}``): ten movies for a user,
  from pipeline ``recommend_v1`` or, with ``version=v2`` or ``v3``, ``recommend_v2`` or
  ``recommend_v3`` (a learned model: ``models/als``, see ``movielens_model.py``). The default
  version is ``$MOVIELENS_VERSION`` (v1), so two SOS revisions of the same artifact can
  serve v1 and v2 and split traffic between them.
- ``GET /recs/popular``: ten well-rated popular movies for visitors without history.
- ``/pipelines/...``: every config in ``pipelines/`` (``$MOVIELENS_PIPELINES`` to use another
  folder), reloaded when a file changes; ``/explorer/`` compares them on a user.

Settings, all from the environment: ``MOVIELENS_DIR`` (the data), ``MOVIELENS_VERSION``,
``MOVIELENS_PIPELINES``, ``FLIGHT_BUDGET_MS`` (default request deadline), ``PORT``/``HOST``.
The data is read once, at start-up, before ``/readyz`` reports ready.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import movielens_operators as ml
from pydantic import Field

import flight

__all__ = ["app"]

HERE = Path(__file__).resolve().parent
VERSIONS = ("v1", "v2", "v3")
DEFAULT_VERSION = os.environ.get("MOVIELENS_VERSION", "v1").strip() or "v1"
if DEFAULT_VERSION not in VERSIONS:
    raise ValueError(f"MOVIELENS_VERSION={DEFAULT_VERSION!r}: use one of {', '.join(VERSIONS)}")

app = flight.App("movielens", configs=os.environ.get("MOVIELENS_PIPELINES") or HERE / "pipelines")


@app.on_startup
def load_data() -> None:
    """Read the data set (a second or two) before the app reports ready."""
    ml.load()


@app.endpoint("/recs/for_user")
async def for_user(
    user_id: Annotated[int, Field(ge=1, description="a MovieLens userId")],
    version: Literal["v1", "v2", "v3"] | None = None,
) -> flight.Result:
    """Ten movies for a MovieLens user: not rated by them yet, genre-diverse, best first."""
    pipeline = app.pipeline(f"recommend_{version or DEFAULT_VERSION}")
    return await pipeline.execute(user_id=user_id)


@app.endpoint("/recs/popular", methods=["GET"])
async def popular() -> flight.Result:
    """Ten well-rated popular movies, genre-diverse, for visitors without history."""
    return await app.pipeline("cold_start").execute()
