"""From a Python function's signature to validated request parameters.

A parameter's type annotation is its contract: query parameters (GET), a JSON object (POST)
and path parameters are validated by a pydantic model made from the signature, so
``user_id: int``, ``version: Literal["v1", "v2"] = "v1"``, ``ids: list[int] = []`` and
``n: Annotated[int, Field(ge=1)] = 10`` all work, and a wrong value is a problem that names
the parameter and where it came from.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict

from flight._limits import load_json
from flight.errors import EndpointDefinitionError

__all__ = ["RESERVED", "Invalid", "Problem", "Signature", "parse_budget", "parse_debug"]

#: query parameters (and POST fields) Flight reads for itself, unless the function takes them
RESERVED = ("debug", "budget_ms")
BUDGET_HEADER = "x-flight-budget-ms"
#: the longest budget a request may ask for, in milliseconds (an hour)
MAX_BUDGET_MS = 3_600_000.0

_PATH_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?}")
_TRUE = frozenset({"", "1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request."""

    parameter: str
    location: str  # query, body, path, header
    message: str
    input: Any = None

    def to_dict(self) -> dict[str, Any]:
        out = {"parameter": self.parameter, "in": self.location, "message": self.message}
        if self.input is not None:
            out["input"] = self.input
        return out

    def __str__(self) -> str:
        got = f" (got {self.input!r})" if self.input is not None else ""
        return f"{self.location} parameter {self.parameter!r}: {self.message}{got}"


class Invalid(Exception):
    """The request's parameters failed validation: answered with 422."""

    def __init__(self, problems: Sequence[Problem], hint: str = "") -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = list(problems)
        self.hint = hint


def _is_multi(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _is_multi(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_multi(a) for a in typing.get_args(tp) if a is not type(None))
    return origin in (list, tuple, set, frozenset, Sequence, typing.Sequence)


def _parameter_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """The parameters' type hints, resolved (the return annotation is not needed, so a
    return type defined in a local scope is fine)."""
    target = inspect.unwrap(fn)
    if not inspect.isfunction(target) and callable(target):
        target = getattr(target, "__call__", target)  # noqa: B004 - a callable object
    raw = dict(getattr(target, "__annotations__", {}) or {})
    raw.pop("return", None)
    holder = types.SimpleNamespace(__annotations__=raw)
    return typing.get_type_hints(
        holder, globalns=getattr(target, "__globals__", {}), include_extras=True
    )


class Signature:
    """The parameters of an endpoint function and how to read them from a request."""

    def __init__(self, fn: Callable[..., Any], path: str) -> None:
        where = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)!s}"
        try:
            sig = inspect.signature(fn)
            hints = _parameter_hints(fn)
        except (NameError, TypeError, ValueError) as exc:
            raise EndpointDefinitionError(
                f"{where}: cannot read its parameter types ({exc})"
            ) from None
        fields: dict[str, Any] = {}
        self.multi: set[str] = set()
        self.path_names = set(_PATH_PARAM.findall(path))
        for p in sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                raise EndpointDefinitionError(
                    f"{where}: parameter {p.name!r} cannot come from a request; endpoint "
                    f"parameters are named, typed and keyword-passable (e.g. user_id: int)"
                )
            if p.name not in hints:
                raise EndpointDefinitionError(
                    f"{where}: parameter {p.name!r} needs a type annotation (e.g. "
                    f"{p.name}: int) so that requests can be validated"
                )
            tp = hints[p.name]
            default = ... if p.default is inspect.Parameter.empty else p.default
            if p.name in self.path_names and default is not ...:
                raise EndpointDefinitionError(
                    f"{where}: path parameter {p.name!r} of {path!r} cannot have a default"
                )
            fields[p.name] = (tp, default)
            if _is_multi(tp):
                self.multi.add(p.name)
        missing = self.path_names - fields.keys()
        if missing:
            raise EndpointDefinitionError(
                f"{where}: the path {path!r} has {{{sorted(missing)[0]}}} but the function "
                f"has no parameter of that name"
            )
        self.names = tuple(fields)
        self.takes = frozenset(fields)
        try:
            self.model: type[BaseModel] = pydantic.create_model(
                f"{getattr(fn, '__name__', 'endpoint')}_params",
                __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
                **fields,
            )
        except (pydantic.PydanticSchemaGenerationError, TypeError) as exc:
            raise EndpointDefinitionError(
                f"{where}: its parameter types cannot be read from a request: {exc}"
            ) from None

    def from_query(
        self, query: Any, path_params: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Split a query string (starlette ``QueryParams``) into the function's raw values and
        Flight's own options (``debug``, ``budget_ms``)."""
        raw: dict[str, Any] = {}
        options: dict[str, str] = {}
        for key in query:
            if key in RESERVED and key not in self.takes:
                options[key] = query[key]
                continue
            raw[key] = query.getlist(key) if key in self.multi else query.getlist(key)[-1]
        raw.update(path_params)
        return raw, options

    def from_body(
        self, body: bytes, query: Any, path_params: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A JSON object body (plus path parameters) and the options from body or query."""
        options: dict[str, Any] = {k: query[k] for k in RESERVED if k in query}
        if not body.strip():
            data: Any = {}
        else:
            try:
                data = load_json(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise Invalid(
                    [Problem("body", "body", f"is not valid JSON: {exc}")],
                    'send a JSON object of the parameters, e.g. {"user_id": 1}',
                ) from None
            if not isinstance(data, dict):
                raise Invalid(
                    [Problem("body", "body", f"must be a JSON object, not {type(data).__name__}")]
                )
        for key in RESERVED:
            if key in data and key not in self.takes:
                options[key] = data.pop(key)
        data.update(path_params)
        return data, options

    def validate(self, raw: Mapping[str, Any], location: str) -> dict[str, Any]:
        try:
            model = self.model.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise Invalid(
                [self._problem(e, location) for e in exc.errors()],
                f"this endpoint takes: {self.describe()}",
            ) from None
        return {name: getattr(model, name) for name in self.names}

    def _problem(self, err: Mapping[str, Any], location: str) -> Problem:
        loc = list(err.get("loc", ()))
        name = str(loc[0]) if loc else "?"
        where = "path" if name in self.path_names else location
        detail = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        if err.get("type") == "extra_forbidden":
            return Problem(name, where, "unknown parameter", err.get("input"))
        if err.get("type") == "missing":
            return Problem(name, where, "is required")
        return Problem(name + detail, where, str(err.get("msg")), err.get("input"))

    def describe(self) -> str:
        """``user_id (integer, required), version ('v1' or 'v2', default 'v1')``."""
        schema = self.model.model_json_schema()
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        parts = []
        for name in self.names:
            prop = props.get(name, {})
            kind = _kind(prop)
            tail = "required" if name in required else f"default {prop.get('default')!r}"
            parts.append(f"{name} ({kind}, {tail})")
        return ", ".join(parts) or "no parameters"

    def openapi(self, method: str) -> dict[str, Any]:
        """The OpenAPI description of these parameters for ``method``."""
        schema = self.model.model_json_schema(ref_template="#/components/schemas/{model}")
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        options = [
            {"name": "debug", "in": "query", "required": False, "schema": {"type": "boolean"}},
            {"name": "budget_ms", "in": "query", "required": False, "schema": {"type": "number"}},
            {
                "name": "X-Flight-Budget-Ms",
                "in": "header",
                "required": False,
                "schema": {"type": "number"},
            },
        ]
        path = [
            {"name": n, "in": "path", "required": True, "schema": props.get(n, {})}
            for n in self.names
            if n in self.path_names
        ]
        if method == "GET":
            query = [
                {"name": n, "in": "query", "required": n in required, "schema": props.get(n, {})}
                for n in self.names
                if n not in self.path_names
            ]
            return {"parameters": path + query + options}
        body = {k: v for k, v in schema.items() if k not in ("$defs",)}
        body["properties"] = {k: v for k, v in props.items() if k not in self.path_names}
        body["required"] = sorted(required - self.path_names)
        return {
            "parameters": path + options,
            "requestBody": {"content": {"application/json": {"schema": body}}},
        }


def _kind(prop: Mapping[str, Any]) -> str:
    """``'v1' or 'v2'``, ``integer``, ``array of integer`` from a JSON schema property."""
    if "enum" in prop:
        return " or ".join(repr(v) for v in prop["enum"])
    if "const" in prop:
        return repr(prop["const"])
    if "anyOf" in prop:
        parts = [_kind(p) for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(parts) or "value"
    if prop.get("type") == "array":
        return f"array of {_kind(prop.get('items', {}))}"
    return str(prop.get("type") or "value")


def parse_debug(value: Any) -> bool:
    """``?debug``, ``?debug=true|1|yes|on`` and JSON ``true`` turn debug on."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Invalid([Problem("debug", "query", "must be true or false", value)])


def parse_budget(header: str | None, option: Any, default_ms: float | None) -> float | None:
    """The request's budget in seconds: the header, else the parameter, else the default."""
    if header is not None:
        value, where, name = header, "header", "X-Flight-Budget-Ms"
    elif option is not None:
        value, where, name = option, "query", "budget_ms"
    else:
        return None if default_ms is None else default_ms / 1000.0
    try:
        ms = float(value)
    except (TypeError, ValueError):
        ms = math.nan
    if math.isnan(ms) or not 0 < ms <= MAX_BUDGET_MS:
        raise Invalid(
            [
                Problem(
                    name,
                    where,
                    f"must be a number of milliseconds in (0, {MAX_BUDGET_MS:g}]",
                    value,
                )
            ]
        )
    return ms / 1000.0
