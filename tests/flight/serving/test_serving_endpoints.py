"""flight.App endpoints over real HTTP: validation (422 naming the parameter), results,
debug output, status codes, health, readiness and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal

import httpx
import pandas as pd
import pytest
from flight_test_ops import Items, Never
from pydantic import BaseModel, Field
from serving_helpers import ServerThread

import flight
import flight.operators as fo
from flight import EndpointDefinitionError, Pipeline

Serve = Callable[[Any], ServerThread]
Client = Callable[[str], httpx.Client]

RECS = Pipeline("recs", item_type="item").initialize(
    includes=[Items([1, 2, 3, 4, 5], column="score", values=[0.1, 0.5, 0.3, 0.9, 0.7])],
    excludes=[Items([3])],
) | [fo.Sort("score", desc=True), fo.Head(3)]


class ServingBoom(fo.TransformOperator):
    def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.DataFrame:
        raise ValueError("no scores today")


def make_app() -> flight.App:
    app = flight.App("endpoints-test", debug=True)

    @app.endpoint("/recs")
    async def recs(
        user_id: int,
        version: Literal["v1", "v2"] = "v1",
        n: Annotated[int, Field(ge=1, le=50)] = 3,
        tags: list[str] | None = None,
    ) -> flight.Result:
        """Top items for a user."""
        return await RECS.execute()

    @app.endpoint("/users/{user_id}/echo")
    def echo(user_id: int, tags: list[int] | None = None) -> dict[str, Any]:
        """A sync function (runs in a worker thread) answering a dict."""
        return {"user_id": user_id, "tags": tags or []}

    @app.endpoint("/broken")
    async def broken() -> flight.Result:
        return await (RECS | ServingBoom()).execute()

    @app.endpoint("/down")
    async def down() -> flight.Result:
        return (
            await Pipeline("down", item_type="item")
            .initialize(includes=[Never().with_policy(timeout=0.01, retries=0)])
            .execute()
        )

    @app.endpoint("/crash")
    async def crash() -> dict[str, Any]:
        raise RuntimeError("the endpoint has a bug")

    @app.endpoint("/gives-up")
    async def gives_up() -> dict[str, Any]:
        async with asyncio.timeout(0):  # the function's own timeout, not a request budget
            await asyncio.sleep(1)
        return {}

    class Summary(BaseModel):
        n: int
        names: list[str]

    @app.endpoint("/summary", methods=["GET"])
    async def summary() -> Summary:
        return Summary(n=2, names=["a", "b"])

    return app


@pytest.fixture
def http(serve: Serve, client: Client) -> httpx.Client:
    return client(serve(make_app()).url)


def test_get_returns_result_to_dict(http: httpx.Client) -> None:
    r = http.get("/recs", params={"user_id": 7})
    assert r.status_code == 200
    assert r.json() == {
        "item": [4, 5, 2],
        "score": [0.9, 0.7, 0.5],
        "reason": None,
        "warnings": [],
        "partial": False,
        "cut": [],
        "debug": None,
    }
    assert len(r.headers["x-trace-id"]) == 32


def test_wrong_type_is_422_naming_the_parameter(http: httpx.Client) -> None:
    r = http.get("/recs", params={"user_id": "seven", "version": "v3"})
    assert r.status_code == 422
    body = r.json()
    named = {(p["parameter"], p["in"]) for p in body["problems"]}
    assert named == {("user_id", "query"), ("version", "query")}
    assert "user_id" in body["error"] and "seven" in body["error"]
    assert "user_id (integer, required)" in body["hint"]


def test_missing_and_unknown_parameters_are_named(http: httpx.Client) -> None:
    r = http.get("/recs", params={"usr_id": 1})
    assert r.status_code == 422
    problems = {p["parameter"]: p["message"] for p in r.json()["problems"]}
    assert problems == {"user_id": "is required", "usr_id": "unknown parameter"}


def test_constraints_and_list_items_are_validated(http: httpx.Client) -> None:
    r = http.get("/recs", params={"user_id": 1, "n": 0})
    assert r.status_code == 422
    assert r.json()["problems"][0]["parameter"] == "n"
    assert "greater than or equal to 1" in r.json()["problems"][0]["message"]
    r = http.get("/users/5/echo", params=[("tags", "1"), ("tags", "x")])
    assert r.status_code == 422
    assert r.json()["problems"][0]["parameter"] == "tags[1]"


def test_post_takes_a_json_body_and_validates_it(http: httpx.Client) -> None:
    r = http.post("/recs", json={"user_id": 7, "version": "v2"})
    assert r.status_code == 200 and r.json()["item"] == [4, 5, 2]
    r = http.post("/recs", json={"user_id": "x"})
    assert r.status_code == 422
    assert r.json()["problems"][0] == {
        "parameter": "user_id",
        "in": "body",
        "message": "Input should be a valid integer, unable to parse string as an integer",
        "input": "x",
    }
    r = http.post("/recs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["problems"][0]["parameter"] == "body"
    r = http.post("/recs", json=[1, 2])
    assert r.status_code == 422 and "JSON object" in r.json()["problems"][0]["message"]


def test_path_parameters_and_sync_functions(http: httpx.Client) -> None:
    r = http.get("/users/12/echo", params=[("tags", "1"), ("tags", "2")])
    assert r.json() == {"user_id": 12, "tags": [1, 2]}
    r = http.get("/users/twelve/echo")
    assert r.status_code == 422
    assert r.json()["problems"][0]["parameter"] == "user_id"
    assert r.json()["problems"][0]["in"] == "path"


def test_debug_true_returns_the_trace_over_http(http: httpx.Client) -> None:
    body = http.get("/recs", params={"user_id": 7, "debug": "true"}).json()
    trace = body["debug"]
    assert [(e["name"], e["role"]) for e in trace] == [
        ("Items", "include"),
        ("Items", "exclude"),
        ("Sort", "step"),
        ("Head", "step"),
    ]
    assert (trace[2]["n_input"], trace[2]["n_output"]) == (4, 4)
    assert trace[3]["output_ids"] == [4, 5, 2]
    assert trace[3]["items"] == [
        {"item": 4, "score": 0.9},
        {"item": 5, "score": 0.7},
        {"item": 2, "score": 0.5},
    ]
    assert all(isinstance(e["elapsed_ms"], float) for e in trace)
    assert http.get("/recs", params={"user_id": 7, "debug": "maybe"}).status_code == 422
    assert http.post("/recs?debug=1", json={"user_id": 7}).json()["debug"] is not None


def test_failed_operator_is_500_with_the_reason(http: httpx.Client) -> None:
    r = http.get("/broken")
    assert r.status_code == 500
    body = r.json()
    assert body["item"] == [] and "no scores today" in body["reason"]
    assert body["error"]["operator"] == "ServingBoom()" and body["error"]["type"] == "OperatorError"


def test_failed_source_is_503(http: httpx.Client) -> None:
    r = http.get("/down")
    assert r.status_code == 503
    assert "timed out" in r.json()["reason"]


def test_bug_in_endpoint_is_500_with_a_message_not_a_traceback(http: httpx.Client) -> None:
    r = http.get("/crash")
    assert r.status_code == 500
    assert r.json() == {"error": "/crash failed: RuntimeError: the endpoint has a bug"}
    for params in ({}, {"budget_ms": 5000}):
        r = http.get("/gives-up", params=params)
        assert r.status_code == 500 and r.json()["error"].startswith("/gives-up failed: Timeout")


def test_pydantic_models_and_unknown_routes(http: httpx.Client) -> None:
    assert http.get("/summary").json() == {"n": 2, "names": ["a", "b"]}
    assert http.post("/summary").status_code == 405
    assert http.get("/nowhere").status_code == 404


def test_health_readiness_index_and_openapi(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json()["status"] == "ready"
    index = http.get("/").json()
    assert index["app"] == "endpoints-test"
    assert {"path": "/recs", "methods": ["GET", "POST"]}.items() <= index["endpoints"][0].items()
    spec = http.get("/openapi.json").json()
    params = {p["name"] for p in spec["paths"]["/recs"]["get"]["parameters"]}
    assert {"user_id", "version", "n", "tags", "debug", "budget_ms"} <= params
    assert spec["paths"]["/recs"]["get"]["summary"] == "Top items for a user."


def test_metrics_count_requests_and_operators(http: httpx.Client) -> None:
    http.get("/recs", params={"user_id": 1})
    http.get("/recs", params={"user_id": "x"})
    text = http.get("/metrics").text
    assert 'flight_http_requests_total{method="GET",route="/recs",status="200"}' in text
    assert 'flight_http_requests_total{method="GET",route="/recs",status="422"}' in text
    assert (
        'flight_operator_items_out_total{operator="Head",pipeline="recs",position="1",'
        'role="step"}' in text
    )
    assert 'flight_pipeline_duration_seconds_count{pipeline="recs"}' in text


def test_startup_hooks_finish_before_the_first_request(serve: Serve, client: Client) -> None:
    app = flight.App("warm-up")
    loaded: dict[str, Any] = {}

    @app.on_startup
    def load_data() -> None:  # sync: runs in a worker thread
        loaded["data"] = [1, 2, 3]

    @app.on_startup
    async def connect() -> None:
        await asyncio.sleep(0.05)
        loaded["connected"] = True

    @app.endpoint("/data")
    async def data() -> dict[str, Any]:
        return loaded

    http = client(serve(app).url)
    assert http.get("/data").json() == {"data": [1, 2, 3], "connected": True}
    assert http.get("/readyz").json() == {"status": "ready", "pipelines": 0, "rejected": []}


def test_endpoint_definition_errors_say_what_to_fix() -> None:
    app = flight.App("bad")
    with pytest.raises(EndpointDefinitionError, match="needs a type annotation"):

        @app.endpoint("/a")
        async def untyped(user_id) -> None:  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(EndpointDefinitionError, match="no parameter of that name"):

        @app.endpoint("/users/{uid}")
        async def wrong_name(user_id: int) -> None:
            return None

    with pytest.raises(EndpointDefinitionError, match="taken by the app itself"):
        app.endpoint("/metrics")

    @app.endpoint("/b")
    async def b() -> None:
        return None

    with pytest.raises(EndpointDefinitionError, match="already served"):
        app.endpoint("/b")(b)
