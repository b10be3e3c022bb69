"""Metrics in Prometheus text format, per pipeline and per operator.

================================================  ==========================================
``flight_pipeline_runs_total``                    runs by ``outcome``: ok, partial, empty,
                                                  failed
``flight_pipeline_duration_seconds``              histogram per pipeline
``flight_operator_duration_seconds``              histogram per operator (``pipeline``,
                                                  ``operator``, ``role``, ``position``)
``flight_operator_items_in_total`` / ``_out_``    items into and out of each operator
``flight_operator_errors_total``                  failures per operator
``flight_empty_results_total``                    empty results by ``reason`` (no_candidates,
                                                  excluded_all, emptied, failed, deadline) and
                                                  the ``operator`` responsible
``flight_source_retries_total``                   retries per source
``flight_source_timeouts_total``                  timeouts per source (its own timeout)
``flight_source_cut_total``                       sources cut by the request deadline
``flight_http_requests_total``                    served requests by ``route``, ``method``,
                                                  ``status``
``flight_http_request_duration_seconds``          histogram per route and method
``flight_config_reloads_total``                   config files (re)loaded, by ``result``
================================================  ==========================================

A served app records them and exposes them at ``/metrics``; anywhere else call
``flight.metrics.enable()`` and read :func:`exposition`. Metrics live in prometheus_client's
default registry (so your own ``prometheus_client`` metrics appear beside them) unless a
``Metrics`` is made with its own registry. With several worker processes, set
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) and ``/metrics``
aggregates every worker.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from flight.hooks import Hooks, OperatorStats, RunInfo, add_hook

if TYPE_CHECKING:
    from flight.result import Result

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsHook", "default_metrics", "enable", "exposition"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: seconds; from half a millisecond (an in-memory operator) to ten seconds (a slow source)
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Flight's metric families on one registry, and the hook that records them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        reg = self.registry
        op_labels = ("pipeline", "operator", "role", "position")
        self.pipeline_runs = Counter(
            "flight_pipeline_runs",
            "Pipeline runs by outcome",
            ("pipeline", "outcome"),
            registry=reg,
        )
        self.pipeline_duration = Histogram(
            "flight_pipeline_duration_seconds",
            "Time to run a pipeline",
            ("pipeline",),
            buckets=BUCKETS,
            registry=reg,
        )
        self.operator_duration = Histogram(
            "flight_operator_duration_seconds",
            "Time spent in one operator",
            op_labels,
            buckets=BUCKETS,
            registry=reg,
        )
        self.items_in = Counter(
            "flight_operator_items_in", "Items given to an operator", op_labels, registry=reg
        )
        self.items_out = Counter(
            "flight_operator_items_out", "Items an operator returned", op_labels, registry=reg
        )
        self.operator_errors = Counter(
            "flight_operator_errors", "Operator failures", op_labels, registry=reg
        )
        self.empty_results = Counter(
            "flight_empty_results",
            "Runs that returned no items, by reason and responsible operator",
            ("pipeline", "reason", "operator"),
            registry=reg,
        )
        self.source_retries = Counter(
            "flight_source_retries", "Source retries", ("pipeline", "operator"), registry=reg
        )
        self.source_timeouts = Counter(
            "flight_source_timeouts",
            "Source attempts that hit the source's own timeout",
            ("pipeline", "operator"),
            registry=reg,
        )
        self.source_cut = Counter(
            "flight_source_cut",
            "Sources cut by the request deadline",
            ("pipeline", "operator"),
            registry=reg,
        )
        self.http_requests = Counter(
            "flight_http_requests",
            "Served requests",
            ("route", "method", "status"),
            registry=reg,
        )
        self.http_duration = Histogram(
            "flight_http_request_duration_seconds",
            "Time to answer a served request",
            ("route", "method"),
            buckets=BUCKETS,
            registry=reg,
        )
        self.config_reloads = Counter(
            "flight_config_reloads",
            "Pipeline config files loaded, by result (ok or rejected)",
            ("result",),
            registry=reg,
        )
        self.hook = MetricsHook(self)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_duration.labels(route, method).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus text format, and its content type."""
        return exposition(self.registry)


class _OperatorSeries:
    __slots__ = ("duration", "errors", "items_in", "items_out")

    def __init__(self, m: Metrics, labels: tuple[str, str, str, str]) -> None:
        self.duration = m.operator_duration.labels(*labels)
        self.items_in = m.items_in.labels(*labels)
        self.items_out = m.items_out.labels(*labels)
        self.errors = m.operator_errors.labels(*labels)


class MetricsHook(Hooks):
    """Records every pipeline run and operator into a :class:`Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._series: dict[tuple[str, str, str, int], _OperatorSeries] = {}

    def _operator(self, pipeline: str, stats: OperatorStats) -> _OperatorSeries:
        key = (pipeline, stats.name, stats.role, stats.position)
        series = self._series.get(key)
        if series is None:
            series = _OperatorSeries(
                self.metrics, (pipeline, stats.name, stats.role, str(stats.position))
            )
            self._series[key] = series
        return series

    def operator_end(self, stats: OperatorStats) -> None:
        run = stats.run
        pipeline = run.pipeline if run is not None else ""
        series = self._operator(pipeline, stats)
        if stats.elapsed_ms is not None:
            series.duration.observe(stats.elapsed_ms / 1000.0)
        if stats.n_in:
            series.items_in.inc(stats.n_in)
        if stats.n_out:
            series.items_out.inc(stats.n_out)
        if stats.status == "failed":
            series.errors.inc()
        if stats.role != "step":
            m = self.metrics
            if stats.retries:
                m.source_retries.labels(pipeline, stats.name).inc(stats.retries)
            if stats.timeouts:
                m.source_timeouts.labels(pipeline, stats.name).inc(stats.timeouts)
            if stats.status == "cut":
                m.source_cut.labels(pipeline, stats.name).inc()

    def pipeline_end(self, run: RunInfo, result: Result) -> None:
        m = self.metrics
        m.pipeline_duration.labels(run.pipeline).observe(result.elapsed_ms / 1000.0)
        if result.error is not None:
            outcome = "failed"
        elif len(result.items) == 0:
            outcome = "empty"
        elif result.partial:
            outcome = "partial"
        else:
            outcome = "ok"
        m.pipeline_runs.labels(run.pipeline, outcome).inc()
        if outcome in ("failed", "empty"):
            reason, operator = empty_reason(result)
            m.empty_results.labels(run.pipeline, reason, operator).inc()


def empty_reason(result: Result) -> tuple[str, str]:
    """A low-cardinality ``(reason, operator)`` for a result without items."""
    stats = result.stats
    if result.error is not None:
        failed = next((s for s in stats if s.status in ("failed", "cut")), None)
        name = failed.name if failed is not None else ""
        kind = "deadline" if failed is not None and failed.status == "cut" else "failed"
        return kind, name
    emptied = next((s for s in stats if s.role == "step" and s.n_out == 0), None)
    if emptied is not None:
        return "emptied", emptied.name
    if any(s.role == "include" and s.n_out for s in stats):
        return "excluded_all", ""
    return "no_candidates", ""


def exposition(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """Prometheus text for ``registry`` (default: the process's), across worker processes
    when ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and registry in (None, REGISTRY):
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged), CONTENT_TYPE
    return generate_latest(registry if registry is not None else REGISTRY), CONTENT_TYPE


_lock = threading.Lock()
_default: Metrics | None = None


def default_metrics() -> Metrics:
    """The process's metrics on the default registry (made on first use)."""
    global _default
    with _lock:
        if _default is None:
            _default = Metrics()
        return _default


def enable(metrics: Metrics | None = None) -> Metrics:
    """Record every pipeline run in this process into ``metrics`` (default: the process's)."""
    chosen = metrics if metrics is not None else default_metrics()
    add_hook(chosen.hook)
    return chosen
