"""Tracing a served request: the incoming W3C traceparent is continued, the request span is
the parent of the pipeline span and that of the operator spans, and a source's outgoing call
made with flight.http carries the trace on; JSON logs carry the same ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from http_recorder import Recorder, running_recorder
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from serving_helpers import ServerThread

import flight
import flight.http
import flight.operators as fo
from flight import Pipeline
from flight.logs import configure_json_logging, stop_json_logging

Serve = Callable[[Any], ServerThread]
Client = Callable[[str], httpx.Client]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
INCOMING = {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}
REMOTE: dict[str, str] = {}


class CallsOut(fo.SourceOperator):
    """Candidates from another service, fetched with flight.http."""

    async def __call__(self, user_id: int) -> fo.Source:
        response = await flight.http.get(REMOTE["url"] + "/items", params={"user": user_id})
        return fo.Source(response.json())


PIPE = Pipeline("traced_recs", item_type="item").initialize(includes=[CallsOut()]) | fo.Head(2)


def make_app() -> flight.App:
    app = flight.App("tracing-test")

    @app.endpoint("/recs")
    async def recs(user_id: int) -> flight.Result:
        return await PIPE.execute(user_id=user_id)

    return app


@pytest.fixture
def remote() -> Iterator[Recorder]:
    with running_recorder() as server:
        REMOTE["url"] = server.url
        yield server


def test_incoming_trace_is_continued_through_pipeline_operators_and_outgoing_call(
    spans: InMemorySpanExporter, remote: Recorder, serve: Serve, client: Client
) -> None:
    http = client(serve(make_app()).url)
    r = http.get("/recs", params={"user_id": 5}, headers=INCOMING)
    assert r.status_code == 200 and r.json()["item"] == [7, 8]
    assert r.headers["x-trace-id"] == TRACE_ID
    finished = {s.name: s for s in spans.get_finished_spans()}
    request = finished["GET /recs"]
    pipeline = finished["pipeline traced_recs"]
    operator = finished["CallsOut"]
    head = finished["Head"]
    outgoing = finished["HTTP GET"]
    assert all(s.context.trace_id == int(TRACE_ID, 16) for s in finished.values())
    assert request.parent is not None and request.parent.span_id == int(CALLER_SPAN, 16)
    assert request.parent.is_remote
    assert pipeline.parent is not None and pipeline.parent.span_id == request.context.span_id
    for child in (operator, head):
        assert child.parent is not None and child.parent.span_id == pipeline.context.span_id
    assert outgoing.parent is not None and outgoing.parent.span_id == operator.context.span_id
    sent = remote.seen[0]["traceparent"]
    assert sent == f"00-{TRACE_ID}-{outgoing.context.span_id:016x}-01"
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/recs"
    assert request.attributes["http.response.status_code"] == 200


def test_without_incoming_trace_each_request_starts_one(
    spans: InMemorySpanExporter, remote: Recorder, serve: Serve, client: Client
) -> None:
    http = client(serve(make_app()).url)
    first = http.get("/recs", params={"user_id": 1}).headers["x-trace-id"]
    second = http.get("/recs", params={"user_id": 1}).headers["x-trace-id"]
    assert first != second and len(first) == 32
    roots = [s for s in spans.get_finished_spans() if s.name == "GET /recs"]
    assert [s.parent for s in roots] == [None, None]


def test_tracing_off_still_continues_the_trace_and_logs_carry_it(
    remote: Recorder, serve: Serve, client: Client
) -> None:
    flight.tracing.shutdown_tracing()  # no exporter: nothing recorded
    stream = io.StringIO()
    engine_log = logging.getLogger("flight.engine")
    configure_json_logging("INFO", stream=stream, logger=engine_log)
    try:
        http = client(serve(make_app()).url)
        r = http.get("/recs", params={"user_id": 3}, headers=INCOMING)
    finally:
        stop_json_logging()
        engine_log.setLevel(logging.NOTSET)
    assert r.headers["x-trace-id"] == TRACE_ID
    assert remote.seen[0]["traceparent"].split("-")[1] == TRACE_ID
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    operator_lines = [line for line in lines if line.get("operator") == "CallsOut"]
    assert operator_lines and operator_lines[0]["trace_id"] == TRACE_ID
    assert len(str(operator_lines[0]["span_id"])) == 16
