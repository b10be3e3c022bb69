"""The context a pipeline declares (``context:`` in a config, ``Pipeline(context=...)``).

A declaration maps each context key to a type, ``int``, ``float``, ``str``, ``bool`` or
``list[T]`` of those, and optionally a default::

    context:
      user_id: int                                # required
      n: {type: int, default: 10}                 # optional: 10 when not given

``check_context`` validates a call's context against it with pydantic before anything runs:
values are converted (``"7"`` -> ``7`` for an ``int``), defaults filled in, and every key
that is missing or of the wrong type is one problem. Keys the declaration does not name pass
through unchanged (two pipelines compared on one context receive the same keys).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Mapping
from typing import Any

import pydantic
from pydantic import ConfigDict, TypeAdapter

__all__ = ["CONTEXT_TYPES", "ContextField", "check_context", "context_fields", "field_config"]

_SCALARS: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
_PY_NAMES: dict[Any, str] = {
    **{t: n for n, t in _SCALARS.items()},
    **{list[t]: f"list[{n}]" for n, t in _SCALARS.items()},  # type: ignore[valid-type]
}
#: the type names a declaration may use
CONTEXT_TYPES = (*_SCALARS, *(f"list[{n}]" for n in _SCALARS))


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: the default of a key that has none (``None`` is a value a default may take)
REQUIRED: Any = _Required()


@dataclasses.dataclass(frozen=True)
class ContextField:
    """One declared context key: its name, type name and default (``REQUIRED`` if none)."""

    name: str
    type: str
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe(self) -> str:
        return f"{self.name} ({self.type}, " + (
            "required)" if self.required else f"default {self.default!r})"
        )


@functools.cache
def _adapter(type_name: str) -> TypeAdapter[Any]:
    if type_name.startswith("list[") and type_name.endswith("]"):
        tp: Any = list[_SCALARS[type_name[5:-1]]]  # type: ignore[misc]
    else:
        tp = _SCALARS[type_name]
    return TypeAdapter(tp, config=ConfigDict(coerce_numbers_to_str=True))


def _type_name(raw: Any) -> str | None:
    if isinstance(raw, str):
        name = raw.replace(" ", "")
        return name if name in CONTEXT_TYPES else None
    return _PY_NAMES.get(raw)


def _message(exc: pydantic.ValidationError) -> str:
    err = exc.errors()[0]
    loc = ", ".join(f"item {p}" for p in err.get("loc", ()))
    return f"{err['msg']} ({loc})" if loc else str(err["msg"])


def context_fields(spec: Mapping[str, Any]) -> tuple[tuple[ContextField, ...], list[str]]:
    """Parse a declaration (``{key: type}`` or ``{key: {type: ..., default: ...}}``; types as
    names or Python types) into fields, and the problems found, one per key."""
    fields: list[ContextField] = []
    problems: list[str] = []
    for key, raw in spec.items():
        where = f"context.{key}"
        if not isinstance(key, str) or not key.isidentifier():
            problems.append(f"{where}: a context key is a Python identifier, got {key!r}")
            continue
        default: Any = REQUIRED
        if isinstance(raw, Mapping):
            unknown = sorted(set(raw) - {"type", "default"})
            if unknown or "type" not in raw:
                problems.append(
                    f"{where}: give {{type: int, default: 10}} (keys type and default)"
                    + (f"; unknown keys {unknown}" if unknown else "; type is missing")
                )
                continue
            raw, default = raw["type"], raw.get("default", REQUIRED)
        name = _type_name(raw)
        if name is None:
            problems.append(f"{where}: unknown type {raw!r}; use one of {', '.join(CONTEXT_TYPES)}")
            continue
        if default is not REQUIRED:
            try:
                default = _adapter(name).validate_python(default)
            except pydantic.ValidationError as exc:
                problems.append(f"{where}.default: {_message(exc)} (got {default!r})")
                continue
            if isinstance(default, list):
                default = tuple(default)  # frozen, like the pipeline
        fields.append(ContextField(key, name, default))
    return tuple(fields), problems


def field_config(field: ContextField) -> Any:
    """One field as it is written in a config."""
    if field.required:
        return field.type
    default = list(field.default) if isinstance(field.default, tuple) else field.default
    return {"type": field.type, "default": default}


def check_context(
    fields: tuple[ContextField, ...], ctx: Mapping[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str, Any]]]:
    """The context converted to the declared types with defaults filled in, and the problems:
    ``(key, message, input)`` for each key missing or of the wrong type."""
    out = dict(ctx)
    problems: list[tuple[str, str, Any]] = []
    for field in fields:
        if field.name not in ctx:
            if field.required:
                problems.append((field.name, f"is required ({field.type})", None))
            else:
                d = field.default
                out[field.name] = list(d) if isinstance(d, tuple) else d
            continue
        value = ctx[field.name]
        try:
            out[field.name] = _adapter(field.type).validate_python(value)
        except pydantic.ValidationError as exc:
            problems.append((field.name, _message(exc), value))
    names = [field.name for field in fields]
    for key in ctx:
        if key not in names:  # a typo ("clinet_id") would otherwise pass silently
            close = difflib.get_close_matches(key, names, 1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append((key, f"is not in the declared context{hint}", ctx[key]))
    return out, problems
