"""The operator registry: one map from names to operator classes.

Every concrete operator class registers itself under its class name when it is defined;
``@register("alias")`` adds more names; packages contribute operators through entry points
of group ``flight.operators`` (an entry point names a module to import or an operator class),
loaded on the first lookup. Built-ins register the same way as user operators.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, TypeVar

from flight.errors import OperatorNameClashError, RegistryError, UnknownOperatorError

if TYPE_CHECKING:
    from flight.operators.base import Operator

__all__ = [
    "ENTRY_POINT_GROUP",
    "get_operator",
    "load_plugins",
    "operator_names",
    "register",
    "register_class",
    "scoped_registry",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "flight.operators"

_lock = threading.RLock()
_by_name: dict[str, type[Operator]] = {}
_plugins_loaded = False
_plugin_errors: dict[str, str] = {}

OpT = TypeVar("OpT", bound="type[Operator]")


def _describe(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _same_definition(a: type, b: type) -> bool:
    # Re-running a module or a notebook cell defines the class again: replace, don't clash.
    return a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__


def register_class(cls: type[Operator], name: str) -> None:
    """Register ``cls`` under ``name``; a different class already there is an error."""
    with _lock:
        existing = _by_name.get(name)
        if existing is not None and existing is not cls and not _same_definition(existing, cls):
            raise OperatorNameClashError(
                f"operator name {name!r} is already taken by {_describe(existing)}; "
                f"{_describe(cls)} cannot register under it. Rename one of the classes, or "
                f"give one an extra name with @fo.register('other_name')."
            )
        _by_name[name] = cls


def register(name: str) -> Callable[[OpT], OpT]:
    """Class decorator adding ``name`` as another registry name of an operator class.

    >>> @fo.register("popular")
    ... class PopularItems(fo.SourceOperator): ...
    """
    from flight.operators.base import Operator

    if not isinstance(name, str) or not name.isidentifier():
        raise RegistryError(f"@register needs an identifier-like name, got {name!r}")

    def decorate(cls: OpT) -> OpT:
        if not (isinstance(cls, type) and issubclass(cls, Operator)):
            raise RegistryError(f"@register({name!r}) decorates operator classes, not {cls!r}")
        register_class(cls, name)
        return cls

    return decorate


def load_plugins() -> dict[str, str]:
    """Import every ``flight.operators`` entry point once; return {entry point: error}."""
    global _plugins_loaded
    from flight.operators.base import Operator

    with _lock:
        if _plugins_loaded:
            return dict(_plugin_errors)
        _plugins_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            label = f"{ep.name} = {ep.value}"
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break every pipeline
                _plugin_errors[label] = f"{type(exc).__name__}: {exc}"
                logger.warning("flight operator plugin %s failed to load: %s", label, exc)
                continue
            if isinstance(obj, type) and issubclass(obj, Operator) and ep.name != obj.__name__:
                register_class(obj, ep.name)
        return dict(_plugin_errors)


def get_operator(name: str) -> type[Operator]:
    """The operator class registered under ``name`` (plugins are loaded on first use)."""
    cls = _by_name.get(name)
    if cls is not None:
        return cls
    load_plugins()
    with _lock:
        cls = _by_name.get(name)
        if cls is not None:
            return cls
        known = sorted(_by_name)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        broken = (
            " Plugins that failed to load: "
            + "; ".join(f"{k} ({v})" for k, v in _plugin_errors.items())
            if _plugin_errors
            else ""
        )
        raise UnknownOperatorError(
            f"unknown operator {name!r}{hint or '.'} Define or import it first, or install the "
            f"package that provides it.{broken}"
        )


def operator_names() -> list[str]:
    """Every registered name, sorted (plugins included)."""
    load_plugins()
    with _lock:
        return sorted(_by_name)


def canonical_name(cls: type[Operator]) -> str:
    """The name a config uses for ``cls``: its class name (always registered)."""
    return cls.__name__


@contextmanager
def scoped_registry() -> Iterator[None]:
    """Undo every registration made inside the block (for tests and notebooks)."""
    global _plugins_loaded
    with _lock:
        saved = dict(_by_name)
        saved_loaded = _plugins_loaded
        saved_errors = dict(_plugin_errors)
    try:
        yield
    finally:
        with _lock:
            _by_name.clear()
            _by_name.update(saved)
            _plugins_loaded = saved_loaded
            _plugin_errors.clear()
            _plugin_errors.update(saved_errors)
