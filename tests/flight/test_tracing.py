"""Tracing through Flight's wrapper: a span per pipeline and per operator, parent/child
structure, attributes, errors; no spans and no hook when tracing is off."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from flight_test_ops import Items, Never
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import flight.operators as fo
from flight import Pipeline, tracing
from flight.hooks import global_hooks


class Traced(fo.TransformOperator):
    """Does its own work in a child span."""

    def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.DataFrame:
        with tracing.span("score items", n=len(df)) as s:
            s.set("model", "v7")
            return df.assign(score=df["item"] * 1.0)


class Explodes(fo.SourceOperator):
    async def __call__(self, **ctx: Any) -> fo.Source:
        raise ConnectionError("feature store down")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing(exporter) == "custom"
    yield exporter
    tracing.shutdown_tracing()


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in finished}


PIPE = Pipeline("traced", item_type="item").initialize(
    includes=[Items([1, 2, 3, 4])], excludes=[Items([4])]
) | [Traced(), fo.Sort("score", desc=True), fo.Head(2)]


async def test_one_span_per_pipeline_and_operator_with_parent_child_structure(
    spans: InMemorySpanExporter,
) -> None:
    await PIPE.execute()
    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    assert sorted(names) == sorted(
        ["pipeline traced", "Items", "Items", "Traced", "score items", "Sort", "Head"]
    )
    pipeline = by_name(finished)["pipeline traced"]
    assert pipeline.parent is None
    trace_id = pipeline.context.trace_id
    assert all(s.context.trace_id == trace_id for s in finished)
    operators = [s for s in finished if s.name in ("Items", "Traced", "Sort", "Head")]
    assert all(
        s.parent is not None and s.parent.span_id == pipeline.context.span_id for s in operators
    )
    own = by_name(finished)["score items"]
    assert (
        own.parent is not None and own.parent.span_id == by_name(finished)["Traced"].context.span_id
    )
    assert own.attributes is not None and own.attributes["model"] == "v7"


async def test_operator_spans_carry_name_args_and_counts(spans: InMemorySpanExporter) -> None:
    await PIPE.execute()
    spans_ = by_name(spans.get_finished_spans())
    head = spans_["Head"].attributes
    assert head is not None
    assert head["flight.operator"] == "Head" and head["flight.role"] == "step"
    assert json.loads(str(head["flight.args"])) == {"n": 2}
    assert (head["flight.n_in"], head["flight.n_out"], head["flight.status"]) == (3, 2, "ok")
    pipeline = spans_["pipeline traced"].attributes
    assert pipeline is not None
    assert (pipeline["flight.n_candidates"], pipeline["flight.n_items"]) == (3, 2)
    assert "flight.partial" not in pipeline  # only set when true


async def test_failed_source_marks_its_span_and_the_pipeline(spans: InMemorySpanExporter) -> None:
    p = Pipeline("fails", item_type="item").initialize(
        includes=[Explodes().with_policy(retries=1, backoff=0)]
    )
    result = await p.execute()
    assert not result.ok
    spans_ = by_name(spans.get_finished_spans())
    source = spans_["Explodes"]
    assert source.status.status_code is StatusCode.ERROR
    assert source.attributes is not None and source.attributes["flight.retries"] == 1
    assert any(e.name == "exception" for e in source.events)
    assert spans_["pipeline fails"].status.status_code is StatusCode.ERROR


async def test_interrupted_run_still_ends_its_spans(spans: InMemorySpanExporter) -> None:
    p = Pipeline("hangs", item_type="item").initialize(includes=[Never().with_policy(timeout=None)])
    task = asyncio.create_task(p.execute())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    spans_ = by_name(spans.get_finished_spans())
    assert spans_["pipeline hangs"].status.status_code is StatusCode.ERROR
    assert "interrupted" in (spans_["pipeline hangs"].status.description or "")
    assert "Never" in spans_


async def test_tracing_off_records_nothing_and_installs_no_hook() -> None:
    tracing.shutdown_tracing()
    assert tracing.configure_tracing("none") == "none"
    assert not any(isinstance(h, tracing.TracingHook) for h in global_hooks())
    with tracing.span("nothing") as s:
        assert not s.recording
    result = await PIPE.execute()
    assert result.ok
    tracing.shutdown_tracing()


def test_exporter_is_chosen_by_environment() -> None:
    try:
        assert tracing.configure_tracing(env={}) == "none"
        assert tracing.configure_tracing(env={"FLIGHT_TRACING": "console"}) == "console"
        endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
        assert tracing.configure_tracing(env=endpoint) == "otlp"
        with pytest.raises(ValueError, match="FLIGHT_TRACING='zipkin' is not one of"):
            tracing.configure_tracing(env={"FLIGHT_TRACING": "zipkin"})
    finally:
        tracing.shutdown_tracing()
    assert tracing.tracing_mode() == "none"


async def test_console_exporter_prints_spans(capsys: pytest.CaptureFixture[str]) -> None:
    tracing.configure_tracing("console", service_name="console-test")
    try:
        await PIPE.execute()
    finally:
        tracing.shutdown_tracing()
    out = capsys.readouterr().out
    assert '"name": "pipeline traced"' in out and '"service.name": "console-test"' in out
