"""Tracing: Flight's thin wrapper over OpenTelemetry. Operator authors never import it.

One span per request (served apps), per pipeline run and per operator, with the operator's
name, args, n_in, n_out, status, retries and timeouts::

    GET /recs/for_user                      (served request; continues an incoming traceparent)
    └── pipeline recommend_v2
        ├── PopularMovies                  (sources overlap in time)
        ├── SimilarToRecent
        │   └── HTTP GET                   (flight.http: carries traceparent onwards)
        ├── AlreadyRated
        ├── Hydrate ... Sort               (steps, in order)

Choose the exporter with :func:`configure_tracing` or the environment:

- ``FLIGHT_TRACING=otlp``: OTLP over HTTP (``OTEL_EXPORTER_OTLP_ENDPOINT`` and the other
  standard ``OTEL_*`` variables apply; set an endpoint alone and otlp is implied);
- ``FLIGHT_TRACING=console``: every span printed as JSON to stdout (development);
- ``FLIGHT_TRACING=global``: use the OpenTelemetry provider your process already set up;
- ``FLIGHT_TRACING=none`` or unset: no spans are recorded or exported. W3C ``traceparent``
  is still continued from requests and carried on by ``flight.http``, and served logs still
  carry a trace id, so nothing breaks in a traced system.

Sampling follows ``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG`` (default: always).
Tests pass an exporter object: ``configure_tracing(InMemorySpanExporter())``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    format_span_id,
    format_trace_id,
)

from flight.hooks import Hooks, OperatorStats, RunInfo, add_hook, remove_hook

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from flight.operators.base import Operator
    from flight.result import Result

__all__ = [
    "EXPORTERS",
    "SpanHandle",
    "TracingHook",
    "configure_tracing",
    "current_ids",
    "flush",
    "inject",
    "span",
    "tracing_mode",
]

logger = logging.getLogger(__name__)

EXPORTERS = ("otlp", "console", "global", "none")
_SCOPE = "flight"


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode = "none"
        self.configured = False
        self.tracer: trace.Tracer = trace.NoOpTracer()
        self.provider: TracerProvider | None = None
        self.hook: TracingHook | None = None


_state = _State()


def tracing_mode() -> str:
    """``otlp``, ``console``, ``global``, ``custom`` (an exporter object) or ``none``."""
    return _state.mode


def recording() -> bool:
    """True when spans are recorded (an exporter is configured)."""
    return _state.mode != "none"


def _mode_from_env(env: Mapping[str, str]) -> str:
    wanted = env.get("FLIGHT_TRACING", "").strip().lower()
    if wanted:
        if wanted not in EXPORTERS:
            raise ValueError(
                f"FLIGHT_TRACING={wanted!r} is not one of {', '.join(EXPORTERS)}; "
                f"set it to otlp (with OTEL_EXPORTER_OTLP_ENDPOINT), console or none"
            )
        return wanted
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return "none"


def configure_tracing(
    exporter: str | SpanExporter | None = None,
    *,
    service_name: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Turn tracing on (or off) for this process; returns the mode now in effect.

    ``exporter``: ``"otlp"``, ``"console"``, ``"global"``, ``"none"``, an OpenTelemetry
    ``SpanExporter`` (spans are handed to it as they end), or ``None`` to read
    ``FLIGHT_TRACING`` from the environment. ``service_name`` defaults to
    ``OTEL_SERVICE_NAME``, then the SOS/Knative service name, then ``flight``. Calling it
    again replaces the previous setup (after flushing it)."""
    environ = os.environ if env is None else env
    mode = _mode_from_env(environ) if exporter is None else exporter
    if isinstance(mode, str) and mode not in EXPORTERS:
        raise ValueError(f"unknown tracing exporter {mode!r}; use one of {', '.join(EXPORTERS)}")
    with _state.lock:
        _shutdown_locked()
        _state.configured = True
        if mode == "none":
            return "none"
        if mode == "global":
            _install(trace.get_tracer(_SCOPE), "global", None)
            return "global"
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        name = (
            service_name
            or environ.get("OTEL_SERVICE_NAME")
            or environ.get("SOS_SERVICE")
            or environ.get("K_SERVICE")
            or "flight"
        )
        attributes: dict[str, str] = {"service.name": name}
        revision = environ.get("SOS_REVISION") or environ.get("K_REVISION")
        if revision:
            attributes["service.version"] = revision
        provider = TracerProvider(resource=Resource.create(attributes))
        if mode == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif mode == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
        else:
            provider.add_span_processor(SimpleSpanProcessor(mode))  # type: ignore[arg-type]
        label = mode if isinstance(mode, str) else "custom"
        _install(provider.get_tracer(_SCOPE), label, provider)
        return label


def configure_tracing_once(env: Mapping[str, str] | None = None) -> str:
    """:func:`configure_tracing` from the environment, unless the process already chose."""
    if _state.configured:
        return _state.mode
    return configure_tracing(None, env=env)


def _install(tracer: trace.Tracer, mode: str, provider: TracerProvider | None) -> None:
    _state.tracer, _state.mode, _state.provider = tracer, mode, provider
    _state.hook = TracingHook()
    add_hook(_state.hook)


def _shutdown_locked() -> None:
    if _state.hook is not None:
        remove_hook(_state.hook)
    if _state.provider is not None:
        _state.provider.shutdown()
    _state.tracer, _state.mode, _state.provider, _state.hook = (
        trace.NoOpTracer(),
        "none",
        None,
        None,
    )


def flush(timeout_ms: int = 5000) -> None:
    """Export the spans still buffered (servers call this when they stop)."""
    provider = _state.provider
    if provider is not None:
        provider.force_flush(timeout_ms)


def shutdown_tracing() -> None:
    """Flush and stop the exporter (servers call this on shutdown)."""
    with _state.lock:
        _shutdown_locked()
        _state.configured = False


# -- spans for code that is not an operator --------------------------------------------------


class SpanHandle:
    """What Flight code may do with an open span, without OpenTelemetry types."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    @property
    def recording(self) -> bool:
        return self._span.is_recording()

    def set(self, key: str, value: Any) -> None:
        """Set an attribute (str, bool, int, float or a list of them; others as text)."""
        if self._span.is_recording():
            self._span.set_attribute(key, _attribute(value))

    def fail(self, message: str, error: BaseException | None = None) -> None:
        if self._span.is_recording():
            self._span.set_status(Status(StatusCode.ERROR, message))
            if error is not None:
                self._span.record_exception(error)

    @property
    def trace_id(self) -> str:
        ctx = self._span.get_span_context()
        return format_trace_id(ctx.trace_id) if ctx.is_valid else ""


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[SpanHandle]:
    """A child span of whatever runs now, for your own work inside an operator or endpoint:

    >>> with flight.tracing.span("load features", user_id=user_id) as s:
    ...     s.set("n_features", 12)
    """
    with _state.tracer.start_as_current_span(
        name, attributes={k: _attribute(v) for k, v in attributes.items()}
    ) as current:
        yield SpanHandle(current)


@contextmanager
def server_span(
    name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]
) -> Iterator[SpanHandle]:
    """The span of one served request, continuing the caller's ``traceparent``.

    Without an exporter nothing is recorded, but the request still gets a trace context
    (the caller's, or fresh random ids) so logs and outgoing calls carry a trace id."""
    parent = propagate.extract(headers)
    if _state.mode != "none":
        with _state.tracer.start_as_current_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=dict(attributes),
            record_exception=False,
            set_status_on_exception=False,
        ) as current:
            yield SpanHandle(current)
        return
    incoming = trace.get_current_span(parent).get_span_context()
    if incoming.is_valid:
        ctx = SpanContext(incoming.trace_id, _ids.generate_span_id(), False, incoming.trace_flags)
    else:
        ctx = SpanContext(_ids.generate_trace_id(), _ids.generate_span_id(), False, TraceFlags(0))
    current_span = NonRecordingSpan(ctx)
    token = otel_context.attach(trace.set_span_in_context(current_span, parent))
    try:
        yield SpanHandle(current_span)
    finally:
        otel_context.detach(token)


@contextmanager
def client_span(method: str, url: str, headers: MutableMapping[str, str]) -> Iterator[SpanHandle]:
    """The span of one outgoing HTTP call; writes ``traceparent`` into ``headers``."""
    if _state.mode == "none":
        propagate.inject(headers)
        yield SpanHandle(trace.get_current_span())
        return
    with _state.tracer.start_as_current_span(
        f"HTTP {method}",
        kind=SpanKind.CLIENT,
        attributes={"http.request.method": method, "url.full": url},
        record_exception=True,
    ) as current:
        propagate.inject(headers)
        yield SpanHandle(current)


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Write the current trace context (``traceparent``, ``tracestate``) into ``headers``."""
    propagate.inject(headers)
    return headers


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the span running now, or None outside any trace."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format_trace_id(ctx.trace_id), format_span_id(ctx.span_id)


def _attribute(value: Any) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and all(
        isinstance(v, str | bool | int | float) for v in value
    ):
        return list(value)
    try:
        return json.dumps(value, default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


class _Ids:
    """Random trace and span ids (OpenTelemetry's generator, created on first use)."""

    def __init__(self) -> None:
        self._gen: Any = None

    def _generator(self) -> Any:
        if self._gen is None:
            from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

            self._gen = RandomIdGenerator()
        return self._gen

    def generate_trace_id(self) -> int:
        return int(self._generator().generate_trace_id())

    def generate_span_id(self) -> int:
        return int(self._generator().generate_span_id())


_ids = _Ids()


# -- the engine hook ----------------------------------------------------------------------------

_PIPELINE = "flight.tracing.pipeline"


class TracingHook(Hooks):
    """Opens a span per pipeline run and per operator (installed by
    :func:`configure_tracing`). Each span is made current while it runs, so anything an
    operator calls (``flight.http``, :func:`span`, logs) is its child."""

    def pipeline_start(self, run: RunInfo) -> None:
        current = _state.tracer.start_span(
            f"pipeline {run.pipeline}",
            attributes={"flight.pipeline": run.pipeline, "flight.run_id": run.run_id},
        )
        token = otel_context.attach(trace.set_span_in_context(current))
        run.state[_PIPELINE] = (current, token)

    def operator_start(self, stats: OperatorStats) -> None:
        run = stats.run
        if run is None or _PIPELINE not in run.state:
            return
        parent = run.state[_PIPELINE][0]
        current = _state.tracer.start_span(
            stats.name,
            context=trace.set_span_in_context(parent),
            attributes={
                "flight.operator": stats.name,
                "flight.role": stats.role,
                "flight.args": _args_json(stats.operator),
            },
        )
        token = otel_context.attach(trace.set_span_in_context(current))
        run.state[stats] = (current, token)

    def operator_end(self, stats: OperatorStats) -> None:
        run = stats.run
        failed = stats.status in ("failed", "skipped", "cut")

        def attributes() -> dict[str, Any]:
            out: dict[str, Any] = {
                "flight.n_in": stats.n_in,
                "flight.n_out": stats.n_out if stats.n_out is not None else 0,
                "flight.status": stats.status,
            }
            if stats.retries:
                out["flight.retries"] = stats.retries
            if stats.timeouts:
                out["flight.timeouts"] = stats.timeouts
            return out

        _close(
            run.state.pop(stats, None) if run is not None else None,
            attributes,
            stats.message if failed else None,
            stats.error if failed else None,
        )

    def pipeline_end(self, run: RunInfo, result: Result) -> None:
        def attributes() -> dict[str, Any]:
            out: dict[str, Any] = {
                "flight.n_candidates": result.n_candidates,
                "flight.n_items": len(result.items),
            }
            if result.partial:
                out["flight.partial"] = True
            if result.cut:
                out["flight.cut"] = list(result.cut)
            if result.reason is not None:
                out["flight.reason"] = result.reason
            return out

        failure = None if result.error is None else str(result.error)
        _close(run.state.pop(_PIPELINE, None), attributes, failure, None)

    def pipeline_abort(self, run: RunInfo, error: BaseException) -> None:
        for key in [k for k in run.state if isinstance(k, OperatorStats) or k == _PIPELINE]:
            current, token = run.state.pop(key)
            if current.is_recording():
                current.set_status(Status(StatusCode.ERROR, f"interrupted: {error!r}"))
            # sources attached their span in their own (finished) task: nothing to restore
            if not (isinstance(key, OperatorStats) and key.role != "step"):
                _detach(token)
            current.end()


_detach = otel_context.detach


def _args_json(op: Operator) -> str:
    """The operator's arguments as JSON, computed once per (immutable) operator."""
    cached: str | None = op.__dict__.get("_flight_args_json")
    if cached is None:
        cached = str(_attribute(op.args()))
        object.__setattr__(op, "_flight_args_json", cached)
    return cached


def _close(
    opened: tuple[trace.Span, Any] | None,
    attributes: Callable[[], dict[str, Any]],
    failure: str | None,
    error: BaseException | None,
) -> None:
    """End a span the hook opened: attributes (computed only when recording), error status,
    and restore the context that was current before it."""
    if opened is None:
        return
    current, token = opened
    if current.is_recording():
        current.set_attributes(attributes())
        if failure is not None:
            current.set_status(Status(StatusCode.ERROR, failure))
            if error is not None:
                current.record_exception(error)
    _detach(token)
    current.end()
