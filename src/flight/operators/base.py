"""Operator kinds: the low layer of Flight.

An operator is a small frozen dataclass whose fields are primitives (so any pipeline can be
written as config), with a ``__call__`` that does one thing:

- :class:`SourceOperator` ``(**ctx) -> Source``: produces candidates (sync or async).
- :class:`FilterOperator`, :class:`SamplerOperator`, :class:`SortOperator`
  ``(df, **ctx) -> pd.Index``: the labels of the rows to keep, in the order to keep them
  (a boolean mask aligned with ``df`` works too). They never mutate ``df``.
- :class:`TransformOperator` ``(df, **ctx) -> DataFrame | Series | dict``: columns to add or
  replace, aligned with ``df``.

Operators never see concurrency, timeouts, retries, logging or merging: the engine does that.
Defining a subclass registers it under its class name; ``abstract=True`` opts out::

    class MyBase(fo.FilterOperator, abstract=True): ...
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import dataclasses
import inspect
import logging
import textwrap
import types
import typing
import weakref
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, ClassVar, Literal, Self, TypeAlias, Union, dataclass_transform

import numpy as np
import pandas as pd
import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict

from flight.candidates import Array, Candidates, Rows
from flight.errors import OperatorArgumentError, OperatorDefinitionError
from flight.operators.registry import register_class

__all__ = [
    "UNSET",
    "FilterOperator",
    "IndexOperator",
    "IndexResult",
    "Operator",
    "OperatorContract",
    "SamplerOperator",
    "SortOperator",
    "Source",
    "SourceOperator",
    "SourcePolicy",
    "TransformOperator",
    "TransformResult",
    "contract_of",
    "warn",
]

_logger = logging.getLogger("flight.engine")
#: the warnings of the step running now (set by the engine around each step)
_step_warnings: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "flight_step_warnings", default=None
)


def warn(message: str) -> None:
    """Report something a user should know about this run of a step (a column that is not
    there, a value out of range) without failing it. The engine adds it to the step's log
    record (a WARNING, with ``warnings`` in its fields), its line in ``flight run``, the
    debug trace and ``result.warnings``. Called outside a step, it is logged on
    ``flight.engine``."""
    notes = _step_warnings.get()
    if notes is None:
        _logger.warning("%s", message)
    elif message not in notes:
        notes.append(message)


class _Unset:
    """Sentinel for "not set here, use the default" (``None`` means "off")."""

    _instance: ClassVar[_Unset | None] = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()

_PRIMITIVES: tuple[type, ...] = (str, int, float, bool, type(None))


@dataclasses.dataclass(frozen=True)
class SourcePolicy:
    """How the engine runs a source: per attempt ``timeout`` in seconds (``None``: no limit),
    ``retries`` after the first attempt, ``backoff`` seconds before the first retry (doubling),
    and whether the source is ``optional`` (the pipeline continues without it)."""

    timeout: float | None = 2.0
    retries: int = 1
    backoff: float = 0.02
    optional: bool = False

    def merged(self, overrides: Mapping[str, Any]) -> SourcePolicy:
        """This policy with every set (non-UNSET) value of ``overrides`` applied."""
        changes = {k: v for k, v in overrides.items() if v is not UNSET}
        return dataclasses.replace(self, **changes) if changes else self


POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(SourcePolicy))


class Source:
    """What a source operator returns: candidates keyed by the pipeline's item type.

    ``data`` is a DataFrame holding the key column (or with the key as its index), a Series
    indexed by key (its values become a column named after the Series), or a plain sequence
    of item ids.
    """

    __slots__ = ("data",)

    def __init__(self, data: pd.DataFrame | pd.Series | pd.Index | Sequence[Any] | Array) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Source({type(self.data).__name__} of {len(self.data)})"


IndexResult: TypeAlias = pd.Index | pd.Series | np.ndarray[Any, Any] | Sequence[int]
TransformResult: TypeAlias = pd.DataFrame | pd.Series | Mapping[str, Any]

_MRO_STOP = ("object",)


def _allowed_type(tp: Any) -> bool:
    if tp in _PRIMITIVES or tp is Any:
        return tp is not Any
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _allowed_type(args[0])
    if origin is Literal:
        return all(isinstance(a, _PRIMITIVES) for a in args)
    if origin in (Union, types.UnionType):
        return all(_allowed_type(a) for a in args)
    if origin in (list, tuple, Sequence, typing.Sequence, set, frozenset):
        inner = [a for a in args if a is not Ellipsis]
        return bool(inner) and all(
            a in _PRIMITIVES
            or (typing.get_origin(a) in (Literal, Union, types.UnionType) and _allowed_type(a))
            for a in inner
        )
    if origin in (dict, Mapping, typing.Mapping):
        return len(args) == 2 and args[0] is str and _allowed_type(args[1])
    return False


def _is_sequence_type(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _is_sequence_type(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return any(_is_sequence_type(a) for a in typing.get_args(tp))
    return origin in (list, tuple, Sequence, typing.Sequence)


def _one_to_list(value: Any) -> Any:
    """Let ``columns: "title"`` mean ``["title"]`` for sequence fields."""
    return [value] if isinstance(value, str | int | float | bool) else value


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


def _plain(value: Any) -> Any:
    """A field value as config: tuples become lists, mappings dicts."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, tuple | list):
        return tuple(_hashable(v) for v in value)
    return value


def _format_value(value: Any) -> str:
    return repr(_plain(value))


def _defining_index(cls: type, attr: str) -> int:
    for i, klass in enumerate(cls.__mro__):
        if attr in klass.__dict__:
            return i
    return len(cls.__mro__)


@dataclasses.dataclass(frozen=True)
class OperatorContract:
    """What the engine, config and serving know of an operator class, worked out once when
    the class is defined (read it with :func:`contract_of`; operator authors never set it).

    ``takes_df``: ``__call__`` takes the candidates' DataFrame first (steps), and
    ``fast_path`` names the array method (``select``, ``transform``) the engine calls instead
    when the class defines it (``fast``). ``context_names``: the context keys ``__call__``
    takes by name, ``context_required`` those without a default; ``context_any``: it takes
    ``**ctx`` (then it is given the whole context).
    """

    abstract: bool = True
    takes_df: bool = False
    fast_path: str = ""
    field_names: tuple[str, ...] = ()
    is_async: bool = False
    fast: bool = False
    context_any: bool = True
    context_names: frozenset[str] = frozenset()
    context_required: frozenset[str] = frozenset()


def contract_of(op: Operator | type[Operator]) -> OperatorContract:
    """The :class:`OperatorContract` of an operator or operator class."""
    return op.__flight_contract__


#: per operator class, resolved lazily (a type hint may name a class defined later)
_field_types_cache: weakref.WeakKeyDictionary[type, dict[str, Any]] = weakref.WeakKeyDictionary()
_args_models: weakref.WeakKeyDictionary[type, type[BaseModel]] = weakref.WeakKeyDictionary()


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
class Operator:
    """Base of every operator. Subclass one of the kinds, not this class."""

    kind: ClassVar[str] = "operator"
    __flight_contract__: ClassVar[OperatorContract] = OperatorContract()

    def __init_subclass__(
        cls,
        *,
        abstract: bool = False,
        takes_df: bool | None = None,
        fast_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        """``abstract``: a base for other operators, not registered. ``takes_df`` and
        ``fast_path`` are set by the kinds in this module (inherited otherwise)."""
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
        inherited = cls.__flight_contract__
        takes_df = inherited.takes_df if takes_df is None else takes_df
        fast_path = inherited.fast_path if fast_path is None else fast_path
        _wrap_init(cls)
        fast_at = _defining_index(cls, fast_path) if fast_path else len(cls.__mro__)
        fast = (
            fast_at < len(cls.__mro__)
            and cls.__mro__[fast_at].__module__ != __name__
            and fast_at <= _defining_index(cls, "__call__")
        )
        context_any, context_names, context_required = _inspect_context(cls, takes_df)
        cls.__flight_contract__ = OperatorContract(
            abstract=abstract,
            takes_df=takes_df,
            fast_path=fast_path,
            field_names=tuple(f.name for f in dataclasses.fields(cls)),  # type: ignore[arg-type]
            is_async=inspect.iscoroutinefunction(cls.__call__),
            fast=fast,
            context_any=context_any,
            context_names=context_names,
            context_required=context_required,
        )
        if abstract:
            return
        definer = cls.__mro__[_defining_index(cls, "__call__")]
        if not fast and getattr(definer, "__module__", "") == __name__:
            raise OperatorDefinitionError(
                f"{cls.__qualname__} must define __call__ (see the {cls.kind} operator docs)"
            )
        _check_no_request_state(cls)
        with contextlib.suppress(NameError):  # a name defined later: checked on first use
            _resolve_field_types(cls)
        register_class(cls, cls.__name__)

    # -- values --------------------------------------------------------------------------

    def _key(self) -> tuple[Any, ...]:
        return (
            type(self),
            tuple(_hashable(getattr(self, f)) for f in contract_of(self).field_names),
            _hashable(self.__dict__.get("_policy_overrides", {})),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Operator):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        cached: str | None = self.__dict__.get("_repr")
        if cached is None:
            names = contract_of(self).field_names
            args = ", ".join(f"{f}={_format_value(getattr(self, f))}" for f in names)
            cached = f"{type(self).__name__}({args})"
            object.__setattr__(self, "_repr", cached)
        return cached

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def required_context(self) -> frozenset[str]:
        """Context keys this operator needs from ``execute(**ctx)`` (checked before running)."""
        return contract_of(self).context_required

    @property
    def name(self) -> str:
        """The registry name used in config (the class name)."""
        return type(self).__name__

    def args(self) -> dict[str, Any]:
        """Every field as plain config values (lists, dicts, primitives)."""
        return {f: _plain(getattr(self, f)) for f in contract_of(self).field_names}

    def non_default_args(self) -> dict[str, Any]:
        """Fields whose value differs from the default: what ``to_config`` writes."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _plain(getattr(self, f.name))
            if f.default is not dataclasses.MISSING and value == _plain(f.default):
                continue
            if f.default_factory is not dataclasses.MISSING and value == _plain(
                f.default_factory()
            ):
                continue
            out[f.name] = value
        return out

    @classmethod
    def args_model(cls) -> type[BaseModel]:
        """The pydantic model that validates this operator's arguments (config and Python)."""
        model = _args_models.get(cls)
        if model is None:
            types_ = _resolve_field_types(cls)
            fields: dict[str, Any] = {}
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                tp = types_[f.name]
                if _is_sequence_type(tp):
                    tp = typing.Annotated[tp, BeforeValidator(_one_to_list)]
                if f.default is not dataclasses.MISSING:
                    fields[f.name] = (tp, f.default)
                elif f.default_factory is not dataclasses.MISSING:
                    fields[f.name] = (tp, pydantic.Field(default_factory=f.default_factory))
                else:
                    fields[f.name] = (tp, ...)
            model = _args_models[cls] = pydantic.create_model(
                f"{cls.__name__}Args",
                __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
                **fields,
            )
        return model


def _resolve_field_types(cls: type[Operator]) -> dict[str, Any]:
    cached = _field_types_cache.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls, include_extras=True)
    found: dict[str, Any] = {}
    for name in contract_of(cls).field_names:
        tp = hints.get(name, Any)
        if not _allowed_type(tp):
            raise OperatorDefinitionError(
                f"{cls.__qualname__}.{name}: field type {tp!r} is not allowed. Operator fields "
                f"hold primitives (str, int, float, bool, None, Literal, and lists or "
                f"str-keyed dicts of them) so every pipeline can be written as config; load "
                f"objects inside __call__ or from an attribute provider."
            )
        found[name] = tp
    _field_types_cache[cls] = found
    return found


def _check_no_request_state(cls: type[Operator]) -> None:
    """Refuse, when the class is defined, a ``__call__`` that sets ``self.x``: an operator is
    config shared by every request, concurrent ones included, so such state would leak from
    one request to another (and the frozen operator would raise at request time)."""
    call = cls.__dict__.get("__call__")
    if call is None:
        return
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(call)))
    except (OSError, TypeError, SyntaxError):
        return  # no source to read (defined in a REPL or by exec): checked at request time
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                raise OperatorDefinitionError(
                    f"{cls.__qualname__}.__call__ sets self.{target.attr}: an operator is "
                    f"config shared by every request (concurrent ones too), so it cannot "
                    f"hold per-request state; keep the value in a local variable "
                    f"({target.attr} = ...) or add it as a column"
                )


def _wrap_init(cls: type[Operator]) -> None:
    generated = cls.__dict__["__init__"]

    def __init__(self: Operator, *args: Any, **kwargs: Any) -> None:
        try:
            generated(self, *args, **kwargs)
        except TypeError as exc:
            raise OperatorArgumentError(f"{type(self).__name__}: {exc}") from None
        _validate_fields(self)

    __init__.__wrapped__ = generated  # type: ignore[attr-defined]
    __init__.__qualname__ = generated.__qualname__
    cls.__init__ = __init__  # type: ignore[method-assign,assignment]


def _validate_fields(op: Operator) -> None:
    cls = type(op)
    names = contract_of(cls).field_names
    if not names:
        return
    values = {f: getattr(op, f) for f in names}
    try:
        model = cls.args_model()
        validated = model.model_validate(values)
    except pydantic.ValidationError as exc:
        raise OperatorArgumentError(
            f"{cls.__name__}: " + "; ".join(_describe_error(e) for e in exc.errors())
        ) from None
    for f in names:
        object.__setattr__(op, f, _freeze(getattr(validated, f)))


def _describe_error(err: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()))
    given = err.get("input")
    shown = "" if err.get("type") == "missing" else f" (got {given!r})"
    return f"{loc}: {err.get('msg')}{shown}" if loc else f"{err.get('msg')}{shown}"


def _inspect_context(
    cls: type[Operator], takes_df: bool
) -> tuple[bool, frozenset[str], frozenset[str]]:
    """The context ``cls.__call__`` takes: ``(**ctx?, names, required names)``."""
    try:
        sig = inspect.signature(cls.__call__)
    except (TypeError, ValueError):
        inherited = cls.__flight_contract__
        return inherited.context_any, inherited.context_names, inherited.context_required
    params = list(sig.parameters.values())[1:]  # self
    if (
        takes_df
        and params
        and params[0].kind
        in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
    ):
        params = params[1:]  # df
    names: set[str] = set()
    required: set[str] = set()
    any_kw = False
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            any_kw = True
        elif p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.add(p.name)
            if p.default is inspect.Parameter.empty:
                required.add(p.name)
    return any_kw, frozenset(names), frozenset(required)


class SourceOperator(Operator, abstract=True):
    """Produces candidates: ``(async) def __call__(self, **ctx) -> fo.Source``.

    Class attributes set this source's policy (unset ones use the engine's):
    ``timeout`` seconds per attempt (``None``: no limit), ``retries``, ``backoff``,
    ``optional``. ``op.with_policy(...)`` overrides them for one instance. Sync sources run in
    a worker thread so they never block the event loop; write ``async def`` for in-memory or
    async I/O sources.
    """

    kind: ClassVar[str] = "source"
    timeout: ClassVar[float | None] = UNSET
    retries: ClassVar[int] = UNSET
    backoff: ClassVar[float] = UNSET
    optional: ClassVar[bool] = UNSET

    def __call__(self, **ctx: Any) -> Source | Awaitable[Source]:
        raise NotImplementedError

    def with_policy(
        self,
        *,
        timeout: float | None = UNSET,
        retries: int = UNSET,
        backoff: float = UNSET,
        optional: bool = UNSET,
    ) -> Self:
        """A copy of this source with its own timeout/retries/backoff/optional settings."""
        given = {"timeout": timeout, "retries": retries, "backoff": backoff, "optional": optional}
        merged = {**self.policy_overrides(), **{k: v for k, v in given.items() if v is not UNSET}}
        try:
            checked = _PolicyOverrides.model_validate(merged).model_dump(exclude_unset=True)
        except pydantic.ValidationError as exc:
            raise OperatorArgumentError(
                f"{self!r}.with_policy: " + "; ".join(_describe_error(e) for e in exc.errors())
            ) from None
        clone = dataclasses.replace(self)
        object.__setattr__(clone, "_policy_overrides", checked)
        return clone

    def policy_overrides(self) -> dict[str, Any]:
        """Policy values set on this instance by :meth:`with_policy`."""
        return dict(self.__dict__.get("_policy_overrides", {}))

    def class_policy(self) -> dict[str, Any]:
        """Policy values set by class attributes (or fields) of this source."""
        return {k: getattr(self, k) for k in POLICY_FIELDS if getattr(self, k) is not UNSET}


class _PolicyOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: a timeout is positive and at most an hour; retries at most 10 (each one is another
    #: full attempt inside the request's budget)
    timeout: float | None = pydantic.Field(default=None, gt=0, le=3600)
    retries: int = pydantic.Field(default=0, ge=0, le=10)
    backoff: float = pydantic.Field(default=0.0, ge=0, le=60)
    optional: bool = False


class IndexOperator(Operator, abstract=True, takes_df=True, fast_path="select"):
    """Returns the labels of the rows of ``df`` to keep, in order (or a boolean mask)."""

    kind: ClassVar[str] = "index"
    verb: ClassVar[str] = "filtering"

    def __call__(self, df: pd.DataFrame, **ctx: Any) -> IndexResult | Awaitable[IndexResult]:
        """Built-ins: the index of ``df`` rows to keep. Usable outside a pipeline."""
        local = self.select(Candidates.from_frame(df), ctx)
        return df.index[local]

    def select(self, candidates: Candidates, ctx: Mapping[str, Any]) -> Rows:
        """Array fast path: local positions ``0..len(candidates)-1`` to keep, in order."""
        raise NotImplementedError


class FilterOperator(IndexOperator, abstract=True):
    """Keeps the rows that pass: ``def __call__(self, df, **ctx) -> pd.Index``."""

    kind: ClassVar[str] = "filter"


class SamplerOperator(IndexOperator, abstract=True):
    """Chooses (and orders) some rows: ``def __call__(self, df, **ctx) -> pd.Index``."""

    kind: ClassVar[str] = "sampler"
    verb: ClassVar[str] = "sampling"


class SortOperator(IndexOperator, abstract=True):
    """Reorders rows: ``def __call__(self, df, **ctx) -> pd.Index`` (all labels, new order)."""

    kind: ClassVar[str] = "sort"
    verb: ClassVar[str] = "sorting"


class TransformOperator(Operator, abstract=True, takes_df=True, fast_path="transform"):
    """Adds or replaces columns: ``def __call__(self, df, **ctx)`` returns a DataFrame, a named
    Series or a dict of columns aligned with ``df`` (same rows, same order)."""

    kind: ClassVar[str] = "transform"

    def __call__(
        self, df: pd.DataFrame, **ctx: Any
    ) -> TransformResult | Awaitable[TransformResult]:
        """Built-ins: ``df`` with the new columns. Usable outside a pipeline."""
        result = self.transform(Candidates.from_frame(df), ctx)
        if inspect.isawaitable(result):
            raise TypeError(f"{self!r} is async here; await it inside a pipeline")
        out = df.copy(deep=False)
        for name, col in result.items():
            if col is None:
                out = out.drop(columns=[name])
            else:
                out[name] = col
        return out

    def transform(
        self, candidates: Candidates, ctx: Mapping[str, Any]
    ) -> Mapping[str, Array | None] | Awaitable[Mapping[str, Array | None]]:
        """Array fast path: columns at candidate order; ``None`` drops a column."""
        raise NotImplementedError
