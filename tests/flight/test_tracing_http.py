"""flight.http: the client Flight gives source operators carries the trace (W3C traceparent)
to the services they call, and bounds its timeouts by the request deadline. Against a real
HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_recorder import Recorder, running_recorder
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import flight.http
import flight.operators as fo
from flight import Pipeline, deadline, tracing


@pytest.fixture
def remote() -> Iterator[Recorder]:
    with running_recorder() as server:
        yield server


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(exporter)
    yield exporter
    tracing.shutdown_tracing()


URL: dict[str, str] = {}


class RemoteItems(fo.SourceOperator):
    """Fetches candidates from another service with flight.http (async)."""

    async def __call__(self, **ctx: Any) -> fo.Source:
        response = await flight.http.get(URL["remote"] + "/items")
        return fo.Source(response.json())


class RemoteItemsSync(fo.SourceOperator):
    """The same with the sync client (sync sources run in a worker thread)."""

    def __call__(self, **ctx: Any) -> fo.Source:
        with flight.http.Client() as client:
            return fo.Source(client.get(URL["remote"] + "/items").json())


def parse(traceparent: str) -> tuple[str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and len(flags) == 2
    return trace_id, span_id


@pytest.mark.parametrize("source", [RemoteItems, RemoteItemsSync])
async def test_outgoing_calls_carry_the_operator_trace(
    remote: Recorder, spans: InMemorySpanExporter, source: type[fo.SourceOperator]
) -> None:
    URL["remote"] = remote.url
    result = await Pipeline("remote", item_type="item").initialize(includes=[source()]).execute()
    assert result.items["item"].tolist() == [7, 8, 9]
    (headers,) = remote.seen
    trace_id, parent_id = parse(headers["traceparent"])
    finished = {s.name: s for s in spans.get_finished_spans()}
    client_span = finished["HTTP GET"]
    operator_span = finished[source.__name__]
    assert trace_id == f"{finished['pipeline remote'].context.trace_id:032x}"
    assert parent_id == f"{client_span.context.span_id:016x}"  # the callee's parent: our call
    assert client_span.parent is not None
    assert client_span.parent.span_id == operator_span.context.span_id
    assert client_span.attributes is not None
    assert client_span.attributes["http.response.status_code"] == 200


async def test_without_an_exporter_the_incoming_trace_is_still_passed_on(
    remote: Recorder,
) -> None:
    tracing.shutdown_tracing()
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with tracing.server_span("GET /x", {"traceparent": incoming}, {}):
        await flight.http.get(remote.url + "/items")
    trace_id, _ = parse(remote.seen[0]["traceparent"])
    assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_timeouts_are_bounded_by_the_request_deadline(remote: Recorder) -> None:
    remote.delay = 2.0
    with deadline(0.1), pytest.raises(httpx.TimeoutException):
        await flight.http.get(remote.url + "/slow", timeout=30.0)
    assert flight.time_left() is None


async def test_the_called_service_is_told_what_is_left_of_the_budget(remote: Recorder) -> None:
    with deadline(5.0):
        await flight.http.get(remote.url + "/items")
    await flight.http.get(remote.url + "/items")
    with_budget, without = remote.seen
    assert 0 < int(with_budget["x-flight-budget-ms"]) <= 5000
    assert "x-flight-budget-ms" not in without


async def test_a_slow_service_is_cut_at_the_deadline_not_the_source_timeout(
    remote: Recorder,
) -> None:
    URL["remote"] = remote.url
    remote.delay = 2.0
    source = RemoteItems().with_policy(timeout=30.0, optional=True)
    with deadline(0.1):
        result = (
            await Pipeline("slow", item_type="item")
            .initialize(includes=[source, RemoteItemsSync().with_policy(optional=True)])
            .execute()
        )
    assert result.partial and len(result.cut) == 2
    assert {s.status for s in result.stats} == {"cut"}
