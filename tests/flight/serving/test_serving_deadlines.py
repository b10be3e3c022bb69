"""Request budgets over HTTP: from the X-Flight-Budget-Ms header, the budget_ms parameter or
the server default; the answer names the sources that were cut and says whether it is
partial, instead of hanging."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from flight_test_ops import Items
from serving_helpers import ServerThread, SlowItems

import flight
import flight.operators as fo
from flight import Pipeline

Serve = Callable[[Any], ServerThread]
Client = Callable[[str], httpx.Client]

FAST = Items([1, 2, 3], column="score", values=[0.3, 0.2, 0.1])
OPTIONAL_SLOW = Pipeline("optional_slow", item_type="item").initialize(
    includes=[FAST, SlowItems([9], seconds=5.0).with_policy(optional=True, timeout=30)]
) | fo.Sort("item")
REQUIRED_SLOW = Pipeline("required_slow", item_type="item").initialize(
    includes=[FAST, SlowItems([9], seconds=5.0).with_policy(timeout=30)]
)


def make_app(budget_ms: float | None = None) -> flight.App:
    app = flight.App("deadline-test", budget_ms=budget_ms)
    app.serve_pipeline(OPTIONAL_SLOW)

    @app.endpoint("/optional")
    async def optional() -> flight.Result:
        return await OPTIONAL_SLOW.execute()

    @app.endpoint("/required")
    async def required() -> flight.Result:
        return await REQUIRED_SLOW.execute()

    @app.endpoint("/stuck")
    async def stuck() -> dict[str, str]:
        await asyncio.sleep(30)  # not a source: nothing cuts it but the hard limit
        return {"late": "yes"}

    @app.endpoint("/left")
    async def left() -> dict[str, float | None]:
        return {"left": flight.time_left()}

    return app


@pytest.fixture
def http(serve: Serve, client: Client) -> httpx.Client:
    return client(serve(make_app()).url)


def assert_partial(r: httpx.Response) -> None:
    assert r.status_code == 200
    body = r.json()
    assert body["partial"] is True
    assert body["cut"] == ["SlowItems(ids=[9], seconds=5.0, column='slow')"]
    assert body["item"] == [1, 2, 3]  # what the fast source found
    assert "cut: the request deadline of 100ms ran out" in body["warnings"][0]


def test_budget_header_cuts_a_slow_optional_source(http: httpx.Client) -> None:
    assert_partial(http.get("/optional", headers={"X-Flight-Budget-Ms": "100"}))


def test_budget_parameter_works_like_the_header(http: httpx.Client) -> None:
    assert_partial(http.get("/optional", params={"budget_ms": 100}))
    r = http.post("/optional", json={"budget_ms": 100})
    assert_partial(r)


def test_pipeline_execute_route_takes_a_budget(http: httpx.Client) -> None:
    assert_partial(http.post("/pipelines/optional_slow/execute?budget_ms=100", json={}))


def test_server_default_budget_applies_without_header(serve: Serve, client: Client) -> None:
    http = client(serve(make_app(budget_ms=100)).url)
    assert_partial(http.get("/optional"))
    # the caller can ask for a different budget
    left = http.get("/left", headers={"X-Flight-Budget-Ms": "2000"}).json()["left"]
    assert 0.1 < left <= 2.0


def test_required_source_cut_is_504_with_the_reason(http: httpx.Client) -> None:
    r = http.get("/required", headers={"X-Flight-Budget-Ms": "100"})
    assert r.status_code == 504
    body = r.json()
    assert body["partial"] is False
    assert body["cut"] == ["SlowItems(ids=[9], seconds=5.0, column='slow')"]
    assert "cut: the request deadline of 100ms ran out" in body["reason"]
    assert body["error"]["type"] == "SourceError"


def test_work_outside_sources_hits_the_hard_limit(http: httpx.Client) -> None:
    r = http.get("/stuck", params={"budget_ms": 100})
    assert r.status_code == 504
    assert "did not answer within its budget of 100ms" in r.json()["error"]


def test_bad_budgets_are_422_naming_where(http: httpx.Client) -> None:
    r = http.get("/optional", headers={"X-Flight-Budget-Ms": "soon"})
    assert r.status_code == 422
    assert r.json()["problems"][0]["parameter"] == "X-Flight-Budget-Ms"
    assert r.json()["problems"][0]["in"] == "header"
    r = http.get("/optional", params={"budget_ms": -5})
    assert r.status_code == 422 and r.json()["problems"][0]["parameter"] == "budget_ms"


def test_no_budget_means_no_deadline(http: httpx.Client) -> None:
    assert http.get("/left").json() == {"left": None}


def test_default_budget_from_environment() -> None:
    app = flight.App("env-budget", env={"FLIGHT_BUDGET_MS": "250"})
    assert app.budget_ms == 250
    with pytest.raises(ValueError, match="FLIGHT_BUDGET_MS"):
        flight.App("env-budget", env={"FLIGHT_BUDGET_MS": "fast"})
