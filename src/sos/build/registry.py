"""The one registry of builders: name -> ``Builder`` class.

The built-in builders (python, node, go, jvm) register themselves when their modules are
imported; plug-ins add theirs by calling ``register_builder`` or through the
``sos.builders`` entry point group (``name = "package.module:BuilderClass"``), loaded on
the first lookup.
"""

from __future__ import annotations

import importlib
import logging
from importlib import metadata
from typing import TYPE_CHECKING, TypeVar

from sos.build.errors import ProjectError

if TYPE_CHECKING:
    from sos.build.base import Builder

__all__ = [
    "builder_names",
    "get_builder",
    "lock_file_names",
    "register_builder",
    "registered_builders",
]

logger = logging.getLogger(__name__)

_BUILTINS = ("python", "node", "go", "jvm")
_BUILTIN_MODULES = tuple(f"sos.build.{name}" for name in _BUILTINS)
_REGISTRY: dict[str, type[Builder]] = {}
_loaded = False

B = TypeVar("B", bound="type[Builder]")


def register_builder(cls: B) -> B:
    """Class decorator: make ``cls`` available as ``sos build --type cls.name``."""
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__name__} needs a class attribute 'name'")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        logger.warning("builder %r: %s replaces %s", name, cls.__name__, existing.__name__)
    _REGISTRY[name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    for entry in metadata.entry_points(group="sos.builders"):
        try:
            register_builder(entry.load())
        except Exception:  # a broken plug-in must not break the built-in builders
            logger.exception("cannot load builder plug-in %s", entry.value)


def registered_builders() -> dict[str, type[Builder]]:
    """Every builder by name, built-in ones first."""
    _load()
    first = {name: _REGISTRY[name] for name in _BUILTINS if name in _REGISTRY}
    return {**first, **{k: v for k, v in _REGISTRY.items() if k not in first}}


def builder_names() -> list[str]:
    return list(registered_builders())


def lock_file_names() -> frozenset[str]:
    """The names of the lock files the builders read and write beside a manifest."""
    return frozenset(name for cls in registered_builders().values() for name in cls.lock_files)


def get_builder(name: str) -> type[Builder]:
    builders = registered_builders()
    try:
        return builders[name]
    except KeyError:
        raise ProjectError(
            f"unknown project type {name!r}: use one of {', '.join(builders)}",
            field="type",
        ) from None
