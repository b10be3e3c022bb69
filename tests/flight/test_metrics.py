"""Prometheus metrics per pipeline and operator: latency histograms, items in/out, empty
results by reason, errors by operator, source retries, timeouts and deadline cuts."""

from __future__ import annotations

from typing import Any

import pytest
from flight_test_ops import Items, Never
from prometheus_client import CollectorRegistry

import flight.operators as fo
from flight import Engine, Pipeline, deadline
from flight.metrics import Metrics


class FlakyOnce(fo.SourceOperator):
    """Fails on its first call per run, then answers."""

    async def __call__(self, attempts: list[int], **ctx: Any) -> fo.Source:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("blip")
        return fo.Source([1, 2, 3])


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def engine(metrics: Metrics) -> Engine:
    return Engine(hooks=[metrics.hook], log=False)


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def pipe(name: str, *includes: fo.SourceOperator, steps: tuple[fo.Operator, ...] = ()) -> Pipeline:
    return Pipeline(name, item_type="item").initialize(includes=list(includes)) | list(steps)


OP = {"role": "step", "position": "0"}


async def test_items_in_and_out_and_latency_per_operator(metrics: Metrics, engine: Engine) -> None:
    p = pipe("counted", Items([1, 2, 3, 4]), steps=(fo.Head(3),))
    await engine.execute(p)
    await engine.execute(p)
    head = {"pipeline": "counted", "operator": "Head", **OP}
    assert value(metrics, "flight_operator_items_in_total", **head) == 8
    assert value(metrics, "flight_operator_items_out_total", **head) == 6
    assert value(metrics, "flight_operator_duration_seconds_count", **head) == 2
    src = {"pipeline": "counted", "operator": "Items", "role": "include", "position": "0"}
    assert value(metrics, "flight_operator_items_out_total", **src) == 8
    assert value(metrics, "flight_pipeline_duration_seconds_count", pipeline="counted") == 2
    assert value(metrics, "flight_pipeline_runs_total", pipeline="counted", outcome="ok") == 2


async def test_empty_results_are_counted_by_reason(metrics: Metrics, engine: Engine) -> None:
    await engine.execute(pipe("emptied", Items([1, 2]), steps=(fo.Threshold("item", min=5),)))
    await engine.execute(pipe("nothing", Items([])))
    excluded = Pipeline("excluded", item_type="item").initialize(
        includes=[Items([1])], excludes=[Items([1])]
    )
    await engine.execute(excluded)
    assert (
        value(
            metrics,
            "flight_empty_results_total",
            pipeline="emptied",
            reason="emptied",
            operator="Threshold",
        )
        == 1
    )
    assert (
        value(
            metrics,
            "flight_empty_results_total",
            pipeline="nothing",
            reason="no_candidates",
            operator="",
        )
        == 1
    )
    assert (
        value(
            metrics,
            "flight_empty_results_total",
            pipeline="excluded",
            reason="excluded_all",
            operator="",
        )
        == 1
    )
    assert value(metrics, "flight_pipeline_runs_total", pipeline="emptied", outcome="empty") == 1


async def test_errors_retries_timeouts_and_cuts_per_source(
    metrics: Metrics, engine: Engine
) -> None:
    await engine.execute(
        pipe("retried", FlakyOnce().with_policy(retries=2, backoff=0)), attempts=[]
    )
    assert (
        value(metrics, "flight_source_retries_total", pipeline="retried", operator="FlakyOnce") == 1
    )
    await engine.execute(pipe("timing", Never().with_policy(timeout=0.01, retries=1, backoff=0)))
    assert value(metrics, "flight_source_timeouts_total", pipeline="timing", operator="Never") == 2
    never = {"pipeline": "timing", "operator": "Never", "role": "include", "position": "0"}
    assert value(metrics, "flight_operator_errors_total", **never) == 1
    assert (
        value(
            metrics,
            "flight_empty_results_total",
            pipeline="timing",
            reason="failed",
            operator="Never",
        )
        == 1
    )
    with deadline(0.02):
        await engine.execute(pipe("cut", Items([1]), Never().with_policy(optional=True)))
    assert value(metrics, "flight_source_cut_total", pipeline="cut", operator="Never") == 1
    assert value(metrics, "flight_pipeline_runs_total", pipeline="cut", outcome="partial") == 1
    with deadline(0.02):
        await engine.execute(pipe("cut_required", Never()))
    assert (
        value(
            metrics,
            "flight_empty_results_total",
            pipeline="cut_required",
            reason="deadline",
            operator="Never",
        )
        == 1
    )


def test_exposition_is_prometheus_text(metrics: Metrics) -> None:
    metrics.observe_request("/recs", "GET", 200, 0.004)
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=")
    text = body.decode()
    assert "# TYPE flight_http_request_duration_seconds histogram" in text
    assert 'flight_http_requests_total{method="GET",route="/recs",status="200"} 1.0' in text
    assert (
        'flight_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/recs"} 1.0'
        in text
    )
