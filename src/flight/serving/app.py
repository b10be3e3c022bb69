"""``flight.App``: plain Python functions and pipeline configs served over HTTP.

>>> app = flight.App("recs", configs="pipelines/")        # serve every config in the folder
>>> @app.endpoint("/recs/for_user")
... async def for_user(user_id: int, version: Literal["v1", "v2"] = "v1") -> flight.Result:
...     return await app.pipeline(f"recommend_{version}").execute(user_id=user_id)

``flight serve module:app`` (or any ASGI server: the app *is* an ASGI application) then
answers:

==============================  ==============================================================
``GET|POST /recs/for_user``     the endpoint: query parameters (GET) or a JSON object (POST),
                                validated from the type hints (422 naming the parameter);
                                ``?debug=true`` adds the debug trace; ``?budget_ms=`` or the
                                ``X-Flight-Budget-Ms`` header set a deadline
``GET /pipelines``              served pipelines, their versions and status
``GET /pipelines/{name}``       one pipeline: config, context it needs, version, last error
``POST /pipelines/{name}/execute``  run it; the JSON body is the context
``GET /explorer/``              the debug explorer (a web page)
``GET /healthz``, ``/readyz``   liveness; readiness (startup done, configs loaded)
``GET /metrics``                Prometheus metrics
``GET /docs``                   OpenAPI docs of the endpoints
==============================  ==============================================================

The ASGI application underneath (FastAPI) is ``app.asgi``: add middleware or routes there.

This module holds the app itself (endpoints, lifecycle, how every request is answered);
reading and checking requests is in ``_request``, the pipeline endpoints in ``_pipelines``,
the explorer in ``_explorer`` and the index, health and metrics in ``_health``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from flight import http as flight_http
from flight import metrics as flight_metrics
from flight import tracing
from flight.deadline import _debug_scope, deadline
from flight.engine import Engine
from flight.errors import EndpointDefinitionError, FlightError, UnknownPipelineError
from flight.hooks import add_hook
from flight.pipeline import Pipeline
from flight.serving._explorer import add_explorer_routes
from flight.serving._health import add_health_routes
from flight.serving._params import Invalid, Signature, parse_budget
from flight.serving._pipelines import add_pipeline_routes
from flight.serving._request import (
    DEBUG_TOKEN_HEADER as DEBUG_TOKEN_HEADER,  # importable from here, as before
)
from flight.serving._request import (
    MAX_BODY_BYTES,
    BodyTooLarge,
    Call,
    DebugRefused,
    check_debug,
    invalid_response,
    read_body,
    request_options,
    truthy,
)
from flight.serving._respond import error_response
from flight.serving.catalog import PipelineCatalog
from flight.serving.request_log import RequestLog

__all__ = ["App"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("flight.serving.access")

F = TypeVar("F", bound=Callable[..., Any])

_BUILTIN_PATHS = ("/", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")
_BUILTIN_PREFIXES = ("/pipelines", "/explorer")


class App:
    """An HTTP service of endpoints and pipelines (see the module docs).

    ``configs``: a directory of pipeline configs to serve at ``/pipelines/{name}``, reloaded
    when files change (``reload=False`` to load once). ``budget_ms``: the default request
    deadline (else ``$FLIGHT_BUDGET_MS``; unset: none). ``debug``: give ``?debug=true``
    traces to any caller (default ``$FLIGHT_DEBUG``, off: then only callers sending
    ``$FLIGHT_DEBUG_TOKEN`` in the ``Flight-Debug-Token`` header get them, others a 403).
    ``explorer``: serve the debug explorer page (default: when ``debug`` is on).
    ``engine``: the engine config pipelines run on (default: the default engine, which
    ``pipeline.execute`` uses too).
    """

    def __init__(
        self,
        name: str = "flight",
        *,
        configs: str | os.PathLike[str] | None = None,
        budget_ms: float | None = None,
        debug: bool | None = None,
        explorer: bool | None = None,
        request_log: str | os.PathLike[str] | None = None,
        request_log_rate: float | None = None,
        reload: bool = True,
        engine: Engine | None = None,
        metrics: flight_metrics.Metrics | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self._env = os.environ if env is None else env
        if budget_ms is None and self._env.get("FLIGHT_BUDGET_MS", "").strip():
            try:
                budget_ms = parse_budget(None, self._env["FLIGHT_BUDGET_MS"], None)
            except Invalid as exc:
                raise ValueError(f"FLIGHT_BUDGET_MS: {exc.problems[0].message}") from None
            budget_ms = budget_ms * 1000.0 if budget_ms is not None else None
        if budget_ms is not None and not budget_ms > 0:
            raise ValueError(
                f"budget_ms must be a positive number of milliseconds, got {budget_ms}"
            )
        self.budget_ms = budget_ms
        self.metrics = flight_metrics.enable(metrics)
        self.engine = engine
        self.catalog = PipelineCatalog(configs, metrics=self.metrics)
        self.catalog.scan()
        self._reload = reload
        #: debug traces (every candidate id, internal columns) only when asked for at start:
        #: App(debug=True), FLIGHT_DEBUG=1 or `flight serve --debug`; else a caller needs
        #: the FLIGHT_DEBUG_TOKEN value in the Flight-Debug-Token header
        self.debug = truthy(self._env.get("FLIGHT_DEBUG", "")) if debug is None else debug
        self._debug_token = self._env.get("FLIGHT_DEBUG_TOKEN", "").strip() or None
        if explorer and not self.debug:
            raise ValueError(
                "the explorer runs pipelines with debug output, which is off: turn it on with "
                "App(debug=True), FLIGHT_DEBUG=1 or `flight serve --debug` (only where "
                "callers may see every candidate id and internal column)"
            )
        self._explorer = self.debug if explorer is None else explorer
        self.request_log = self._request_log(request_log, request_log_rate)
        cap = self._env.get("FLIGHT_MAX_BODY_BYTES", "").strip()
        self.max_body_bytes = int(cap) if cap.isdigit() else MAX_BODY_BYTES
        self._startup: list[Callable[[], Any]] = []
        self._shutdown: list[Callable[[], Any]] = []
        self._ready = False
        self._routes: set[tuple[str, str]] = set()
        self._endpoints: list[dict[str, Any]] = []
        self._asgi = FastAPI(
            title=name,
            lifespan=self._lifespan,
            redoc_url=None,
            description=f"Flight app {name!r}: endpoints, pipelines, explorer and metrics.",
        )
        self._add_builtin_routes()

    # -- the high layer ---------------------------------------------------------------------

    def endpoint(
        self, path: str, *, methods: Sequence[str] = ("GET", "POST"), summary: str | None = None
    ) -> Callable[[F], F]:
        """Serve a function at ``path``. Its typed parameters come from the query string
        (GET), a JSON object body (POST) or ``{placeholders}`` in the path; what it returns
        becomes the response (a ``Result`` as ``result.to_dict()``)."""
        if not path.startswith("/"):
            raise EndpointDefinitionError(f"endpoint path {path!r} must start with '/'")
        if path in _BUILTIN_PATHS or path.startswith(_BUILTIN_PREFIXES):
            raise EndpointDefinitionError(
                f"endpoint path {path!r} is taken by the app itself ({', '.join(_BUILTIN_PATHS)}"
                f", {', '.join(p + '/...' for p in _BUILTIN_PREFIXES)}); choose another"
            )
        verbs = [m.upper() for m in methods]
        unknown = [m for m in verbs if m not in ("GET", "POST")]
        if unknown or not verbs:
            raise EndpointDefinitionError(f"endpoint methods are GET and/or POST, got {methods!r}")

        def decorate(fn: F) -> F:
            if not callable(fn):
                raise EndpointDefinitionError(f"@app.endpoint decorates a function, not {fn!r}")
            signature = Signature(fn, path)
            for verb in verbs:
                if (verb, path) in self._routes:
                    raise EndpointDefinitionError(f"{verb} {path} is already served")
            doc = inspect.getdoc(fn) or ""
            for verb in verbs:
                self._routes.add((verb, path))
                self._asgi.add_api_route(
                    path,
                    self._endpoint_handler(fn, path, signature, verb),
                    methods=[verb],
                    name=f"{getattr(fn, '__name__', 'endpoint')}:{verb}",
                    summary=summary or (doc.splitlines()[0] if doc else None),
                    description=doc or None,
                    response_model=None,
                    openapi_extra=signature.openapi(verb),
                )
            self._endpoints.append(
                {"path": path, "methods": verbs, "parameters": signature.describe()}
            )
            return fn

        return decorate

    def serve_pipeline(self, pipeline: Pipeline) -> Pipeline:
        """Serve a pipeline built in Python at ``/pipelines/{pipeline.name}`` (and in the
        explorer) beside those from config."""
        self.catalog.add(pipeline)
        return pipeline

    def pipeline(self, name: str) -> Pipeline:
        """The version of served pipeline ``name`` running now (it changes when its config
        file changes); raises :class:`~flight.errors.UnknownPipelineError`."""
        return self.catalog.get(name)

    def on_startup(self, fn: F) -> F:
        """Run ``fn`` (sync: in a worker thread; or async) before the app reports ready."""
        self._startup.append(fn)
        return fn

    def on_shutdown(self, fn: F) -> F:
        """Run ``fn`` when the server stops."""
        self._shutdown.append(fn)
        return fn

    @property
    def ready(self) -> bool:
        return self._ready

    def run(self, host: str | None = None, port: int | None = None, **options: Any) -> None:
        """Serve with uvicorn (``HOST``/``PORT`` from the environment by default), JSON logs."""
        from flight.serving.server import serve

        serve(self, host=host, port=port, **options)

    # -- the low layer ----------------------------------------------------------------------

    @property
    def asgi(self) -> FastAPI:
        """The ASGI application underneath (FastAPI): add middleware or routes to it."""
        return self._asgi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)

    # -- lifecycle --------------------------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, _asgi: Any) -> AsyncIterator[None]:
        tracing.configure_tracing_once(self._env)
        if not logging.getLogger().handlers:
            from flight.logs import configure_json_logging

            configure_json_logging(self._env.get("FLIGHT_LOG_LEVEL", "INFO"))
        stop = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        try:
            for fn in self._startup:
                await _call_maybe_sync(fn)
            await asyncio.to_thread(self.catalog.scan)
            if self._reload and self.catalog.directory is not None:
                watcher = asyncio.create_task(self.catalog.watch(stop), name="flight-configs")
            self._ready = True
            logger.info(
                "app %r ready: %d endpoints, pipelines: %s",
                self.name,
                len(self._endpoints),
                ", ".join(self.catalog.names()) or "none",
            )
            yield
        finally:
            self._ready = False
            stop.set()
            if watcher is not None:
                try:
                    await asyncio.wait_for(watcher, 5.0)
                except (TimeoutError, asyncio.CancelledError):
                    watcher.cancel()
            for fn in self._shutdown:
                try:
                    await _call_maybe_sync(fn)
                except Exception:
                    logger.exception("shutdown hook %r failed", fn)
            await flight_http.aclose()
            tracing.flush()

    # -- requests ---------------------------------------------------------------------------

    async def _handle(
        self, request: Request, route: str, parse: Callable[[Request], Awaitable[Call]]
    ) -> Response:
        t0 = time.perf_counter()
        method = request.method
        attributes = {
            "http.request.method": method,
            "http.route": route,
            "url.path": request.url.path,
        }
        with tracing.server_span(f"{method} {route}", request.headers, attributes) as span:
            response = await self._respond(request, route, parse)
            status = response.status_code
            span.set("http.response.status_code", status)
            if status >= 500:
                span.fail(f"HTTP {status}")
            trace_id = span.trace_id
            if trace_id:
                response.headers["x-trace-id"] = trace_id
            elapsed = time.perf_counter() - t0
            if access_logger.isEnabledFor(logging.INFO):
                access_logger.info(
                    "%s %s %d in %.1fms",
                    method,
                    request.url.path,
                    status,
                    elapsed * 1000.0,
                    extra={
                        "flight": {
                            "route": route,
                            "method": method,
                            "status": status,
                            "elapsed_ms": round(elapsed * 1000.0, 3),
                        }
                    },
                )
        self.metrics.observe_request(route, method, status, elapsed)
        return response

    async def _respond(
        self, request: Request, route: str, parse: Callable[[Request], Awaitable[Call]]
    ) -> Response:
        try:
            call = await parse(request)
        except Invalid as exc:
            return invalid_response(request, exc)
        except DebugRefused as exc:
            return error_response(403, str(exc))
        except BodyTooLarge as exc:
            return error_response(413, str(exc))
        except UnknownPipelineError as exc:
            return error_response(404, str(exc))
        limit = None if call.budget is None else call.budget + min(1.0, max(0.05, call.budget))
        hard_limit = asyncio.timeout(limit)
        try:
            with deadline(call.budget), _debug_scope(call.debug):
                async with hard_limit:
                    value = await call.run()
        except Invalid as exc:
            return invalid_response(request, exc)
        except TimeoutError as exc:
            if call.budget is None or not hard_limit.expired():  # the function's own timeout
                logger.exception("%s %s failed", request.method, route)
                return error_response(500, f"{route} failed: {type(exc).__name__}: {exc}")
            logger.warning(
                "%s %s gave up: past its %.0fms budget", request.method, route, call.budget * 1000
            )
            return error_response(
                504,
                f"{route} did not answer within its budget of {call.budget * 1000:.4g}ms; "
                f"sources were cut at the deadline but the rest of the work took too long",
            )
        except UnknownPipelineError as exc:
            logger.exception("%s %s failed", request.method, route)
            return error_response(500, f"{route}: {exc}")
        except FlightError as exc:
            logger.exception("%s %s failed", request.method, route)
            return error_response(500, f"{route} failed: {exc}")
        except Exception as exc:
            logger.exception("%s %s failed", request.method, route)
            return error_response(500, f"{route} failed: {type(exc).__name__}: {exc}")
        try:
            return call.respond(value)
        except Exception as exc:
            logger.exception("%s %s returned a value that cannot be sent", request.method, route)
            return error_response(
                500, f"{route} returned {type(value).__name__}, which cannot be sent as JSON: {exc}"
            )

    def _endpoint_handler(
        self, fn: Callable[..., Any], path: str, signature: Signature, method: str
    ) -> Callable[[Request], Awaitable[Response]]:
        is_async = inspect.iscoroutinefunction(fn)

        async def parse(request: Request) -> Call:
            if method == "GET":
                raw, options = signature.from_query(request.query_params, request.path_params)
                kwargs = signature.validate(raw, "query")
            else:
                body = await self._body(request)
                raw, options = signature.from_body(body, request.query_params, request.path_params)
                kwargs = signature.validate(raw, "body")
            debug, budget = self._options(request, options)
            if "debug" in signature.takes:
                if kwargs["debug"] and not debug:
                    self._check_debug(request)
                debug = debug or bool(kwargs["debug"])
            if is_async:
                return Call(lambda: fn(**kwargs), debug, budget)
            return Call(lambda: asyncio.to_thread(fn, **kwargs), debug, budget)

        async def handler(request: Request) -> Response:
            return await self._handle(request, path, parse)

        return handler

    def _options(self, request: Request, options: Mapping[str, Any]) -> tuple[bool, float | None]:
        return request_options(
            request, options, debug=self.debug, token=self._debug_token, budget_ms=self.budget_ms
        )

    def _request_log(
        self, path: str | os.PathLike[str] | None, rate: float | None
    ) -> RequestLog | None:
        """Sampled pipeline runs to a JSON-lines file for ``flight replay`` (off by default:
        ``request_log=`` or ``$FLIGHT_REQUEST_LOG``, rate ``$FLIGHT_REQUEST_LOG_RATE``)."""
        path = path or self._env.get("FLIGHT_REQUEST_LOG", "").strip() or None
        if path is None:
            return None
        if rate is None:
            text = self._env.get("FLIGHT_REQUEST_LOG_RATE", "").strip() or "1"
            try:
                rate = float(text)
            except ValueError:
                raise ValueError(f"FLIGHT_REQUEST_LOG_RATE={text!r} is not a number") from None

        def version_of(name: str) -> str | None:
            try:
                return self.catalog.entry(name).version
            except UnknownPipelineError:  # a pipeline built in Python, not a served config
                return None

        log = RequestLog(path, rate, version_of=version_of)
        add_hook(log)
        return log

    async def _body(self, request: Request) -> bytes:
        """The request body, read up to ``max_body_bytes`` (``$FLIGHT_MAX_BODY_BYTES``, 1 MiB)."""
        return await read_body(request, self.max_body_bytes)

    def _check_debug(self, request: Request) -> None:
        check_debug(request, debug=self.debug, token=self._debug_token)

    # -- built-in routes --------------------------------------------------------------------

    def _add_builtin_routes(self) -> None:
        asgi = self._asgi
        add_health_routes(asgi, self, endpoints=self._endpoints, explorer=self._explorer)
        add_pipeline_routes(asgi, self, handle=self._handle, options=self._options, body=self._body)
        if self._explorer:
            add_explorer_routes(asgi)


async def _call_maybe_sync(fn: Callable[[], Any]) -> None:
    if inspect.iscoroutinefunction(fn):
        await fn()
        return
    out = await asyncio.to_thread(fn)
    if inspect.isawaitable(out):
        await out
