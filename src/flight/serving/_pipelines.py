"""The pipeline endpoints of an app: ``GET /pipelines`` (the served pipelines, their versions
and status), ``GET /pipelines/{name}`` (one pipeline: config, the context it needs, last
error) and ``POST /pipelines/{name}/execute`` (run it; the JSON body is the context)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from flight._context import field_config
from flight.errors import ExecuteError, UnknownPipelineError
from flight.operators.base import contract_of
from flight.pipeline import Pipeline
from flight.result import Result
from flight.serving._params import Invalid, Problem
from flight.serving._request import Call, json_object
from flight.serving._respond import error_response, json_response, respond
from flight.serving.catalog import PipelineEntry

if TYPE_CHECKING:
    from flight.serving.app import App

__all__ = ["add_pipeline_routes", "entry_detail", "entry_summary"]

#: how the app answers a request: ``handle(request, route, parse)``
Handle = Callable[[Request, str, Callable[[Request], Awaitable[Call]]], Awaitable[Response]]
#: the request's ``(debug, budget)`` from its options (checked)
Options = Callable[[Request, Mapping[str, Any]], tuple[bool, float | None]]
#: the request's body, read under the app's limit
Body = Callable[[Request], Awaitable[bytes]]

EXECUTE_ROUTE = "/pipelines/{name}/execute"


def add_pipeline_routes(
    asgi: FastAPI, app: App, *, handle: Handle, options: Options, body: Body
) -> None:
    """Serve ``app``'s pipelines (``app.catalog``, run on ``app.engine``) on ``asgi``."""

    async def _list_pipelines(request: Request) -> Response:
        catalog = app.catalog
        return json_response(
            {
                "directory": str(catalog.directory) if catalog.directory else None,
                "pipelines": [entry_summary(e) for e in catalog.entries()],
            }
        )

    async def _show_pipeline(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            entry = app.catalog.entry(name)
        except UnknownPipelineError as exc:
            return error_response(404, str(exc))
        return json_response(entry_detail(entry))

    async def parse_execute(request: Request) -> Call:
        name = request.path_params["name"]
        entry = app.catalog.entry(name)
        pipeline = entry.pipeline
        if pipeline is None:
            raise UnknownPipelineError(
                f"pipeline {name!r} has no valid version to serve: {entry.error}"
            )
        try:
            context: Any = json_object(await body(request))
        except ValueError as exc:
            raise Invalid(
                [Problem("body", "body", str(exc))],
                'send the context as a JSON object, e.g. {"user_id": 1}',
            ) from None
        query = request.query_params
        debug, budget = options(
            request, {k: query[k] for k in ("debug", "budget_ms") if k in query}
        )
        cols = [c for v in query.getlist("return_cols") for c in v.split(",") if c.strip()]
        clash = sorted(k for k in ("debug", "return_cols") if k in context)
        if clash:
            raise Invalid(
                [Problem(k, "body", "is an option, not context") for k in clash],
                "pass debug and return_cols as query parameters: ?debug=true&return_cols=a,b",
            )
        engine = app.engine
        version = entry.version or ""

        async def run() -> Result:
            try:
                if engine is not None:
                    return await engine.execute(
                        pipeline, return_cols=cols or None, debug=debug, **context
                    )
                return await pipeline.execute(return_cols=cols or None, debug=debug, **context)
            except ExecuteError as exc:  # the engine checked the context: nothing ran
                raise execute_invalid(name, pipeline, exc) from None

        def answer(value: Any) -> Response:
            assert isinstance(value, Result)
            if isinstance(value.error, ExecuteError):  # ?return_cols asks for a missing column
                return error_response(
                    422,
                    str(value.error),
                    problems=[
                        {"parameter": "return_cols", "in": "query", "message": str(value.error)}
                    ],
                )
            response = respond(value)
            response.headers["x-flight-pipeline-version"] = version
            return response

        return Call(run, debug, budget, answer)

    async def _execute_handler(request: Request) -> Response:
        return await handle(request, EXECUTE_ROUTE, parse_execute)

    add = asgi.add_api_route
    add("/pipelines", _list_pipelines, methods=["GET"], tags=["pipelines"])
    add("/pipelines/{name}", _show_pipeline, methods=["GET"], tags=["pipelines"])
    add(
        EXECUTE_ROUTE,
        _execute_handler,
        methods=["POST"],
        tags=["pipelines"],
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": {"type": "object"}}},
                "description": 'the context, e.g. {"user_id": 1}',
            }
        },
    )


def execute_invalid(name: str, pipeline: Pipeline, exc: ExecuteError) -> Invalid:
    """The 422 for a call the engine refused: each context key that failed the pipeline's
    declaration, or that the call lacks, as a problem of the body."""
    if exc.problems:
        return Invalid(
            [Problem(k, "body", m, v) for k, m, v in exc.problems],
            f"pipeline {name!r} takes: " + ", ".join(f.describe() for f in pipeline.context or ()),
        )
    if exc.missing:
        missing = list(exc.missing)
        return Invalid(
            [Problem(k, "body", f"is required by {', '.join(exc.missing[k])}") for k in missing],
            f"pipeline {name!r} needs context {', '.join(missing)}; send it as the JSON "
            f'body, e.g. {{"{missing[0]}": ...}}',
        )
    return Invalid([Problem("context", "body", str(exc))])


def _when(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _file_name(path: Path | None) -> str | None:
    return None if path is None else path.name


def entry_summary(entry: PipelineEntry) -> dict[str, Any]:
    """One served pipeline as ``GET /pipelines`` lists it."""
    p = entry.pipeline
    return {
        "name": entry.name,
        "status": entry.status,
        "serving": p is not None,
        "source": entry.source.name if entry.source is not None else "python",
        "version": entry.version,
        "loaded_at": _when(entry.loaded_at),
        "description": p.description if p is not None else "",
        "context": sorted(p.required_context()) if p is not None else [],
        "error": entry.error,
    }


def entry_detail(entry: PipelineEntry) -> dict[str, Any]:
    """One served pipeline as ``GET /pipelines/{name}`` shows it."""
    out = entry_summary(entry)
    p = entry.pipeline
    out["error"] = (
        None
        if entry.error is None
        else {
            "message": entry.error,
            "version": entry.error_version,
            "at": _when(entry.error_at),
            "serving_instead": entry.version,
            "file": _file_name(entry.error_source or entry.source),
        }
    )
    if p is not None:
        required = p.required_context()
        used = {k for op in p.operators() for k in contract_of(op).context_names}
        declared = {f.name: f for f in p.context or ()}
        optional = sorted((used | declared.keys()) - required)
        context: dict[str, Any] = {"required": sorted(required), "optional": optional}
        if p.context is not None:  # the declaration: each key's type and default
            context["declared"] = {
                f.name: {"type": f.type, "required": f.required}
                | ({} if f.required else {"default": field_config(f)["default"]})
                for f in p.context
            }
        out.update(
            item_type=p.item_type,
            context=context,
            return_cols=list(p.return_cols) if p.return_cols is not None else None,
            operators=[
                {"role": role, "name": op.name, "kind": op.kind, "args": op.args()}
                for role, ops in (
                    ("include", p.includes),
                    ("exclude", p.excludes),
                    ("step", p.steps),
                )
                for op in ops
            ],
            config=p.to_config(),
        )
    return out
