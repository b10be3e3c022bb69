"""The backend registry: ``sos server --backend NAME`` (``SOS_BACKEND``) picks an entry here.

A backend is a ``BackendPlugin``: its name, its typed options (a ``BackendOptions`` model,
one field per ``--backend-opt KEY=VALUE``, each with its environment variable), the
``sos server`` flags that set some of them, and its factory. Backends are found the way
every SOS plug-in is (``docs/sos/extending.md``): an entry point of group ``sos.backends``
names the plug-in object, ``name = "package.module:PLUGIN"``.

The built-in backends (``fake``, ``local``, ``knative``) are declared in ``pyproject.toml``
like any plug-in, and also in ``BUILTIN_BACKENDS`` below: the package metadata of an
editable install only learns new entry points when it is reinstalled, and the built-ins
must be there regardless. A third-party entry point cannot take a built-in's name.

Lazy on two levels: the module an entry point names holds only the plug-in description
(options, flags), cheap to import, so that ``sos server`` can offer every backend's flags;
the factory, a ``"module:function"`` string, is imported only when that backend is created
(knative needs the optional ``kubernetes`` package). ``register_backend`` adds a backend
from code, in this process only.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from sos.errors import ValidationError
from sos.runtime.base import Backend

if TYPE_CHECKING:
    from sos.artifacts.base import ArtifactStore

__all__ = [
    "BUILTIN_BACKENDS",
    "DEFAULT_BACKEND",
    "ENTRY_POINT_GROUP",
    "ArtifactPath",
    "BackendContext",
    "BackendFactory",
    "BackendFlag",
    "BackendOptions",
    "BackendPlugin",
    "NoOptions",
    "backend_names",
    "create_backend",
    "get_backend",
    "option_error",
    "register_backend",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "sos.backends"

#: name -> the ``BackendPlugin`` object (``"module:attribute"``); also in pyproject.toml
BUILTIN_BACKENDS: Mapping[str, str] = {
    "fake": "sos.runtime.fake:PLUGIN",
    "local": "sos.runtime.local.options:PLUGIN",
    "knative": "sos.runtime.knative.settings:PLUGIN",
}

#: what ``sos server`` runs when neither --backend nor SOS_BACKEND says
DEFAULT_BACKEND = "local"

#: digest -> local path of the artifact file (given by the artifact store when configured)
ArtifactPath = Callable[[str], Path]


@dataclass(frozen=True)
class BackendContext:
    """What a backend factory gets from the server."""

    data_dir: Path
    #: ``--backend-opt key=value`` pairs and the backend's flags, e.g. ``router_port=8080``;
    #: the factory parses them with its ``BackendOptions`` model
    options: Mapping[str, str] = field(default_factory=dict)
    #: resolves an artifact digest to a file; None until an artifact store is configured
    artifact_path: ArtifactPath | None = None
    #: the artifact store itself (``sos.artifacts``), when configured
    artifact_store: ArtifactStore | None = None


BackendFactory = Callable[[BackendContext], Backend]


class BackendOptions(BaseModel):
    """A backend's options, typed: one field per ``--backend-opt`` key.

    ``parse`` takes each option from ``--backend-opt`` (or a flag), else from its environment
    variable (``env``), else the field's default; it refuses a key that is not a field,
    naming the valid ones. Field validators raise ``ValueError`` with what is wrong; the
    message then names the option and its variable.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the backend's name as error messages say it ("local", "Knative")
    label: ClassVar[str] = ""
    #: option -> the environment variable read when the option is not given
    env: ClassVar[Mapping[str, str]] = {}
    #: option someone may mistake for one of these -> a hint where the setting is
    hints: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def keys(cls) -> list[str]:
        return list(cls.model_fields)

    @classmethod
    def gather(
        cls, options: Mapping[str, str], environ: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The value of each option given: from ``options`` (``image-registry`` means
        ``image_registry``), else from its environment variable; an unknown key is refused."""
        env = os.environ if environ is None else environ
        given = {key.strip().replace("-", "_"): value for key, value in options.items()}
        unknown = sorted(set(given) - set(cls.model_fields))
        if unknown:
            hints = [cls.hints[key] for key in unknown if key in cls.hints]
            valid = f"use {', '.join(cls.keys())}" if cls.keys() else "it takes none"
            raise ValidationError(
                f"unknown {cls.label or 'this'} backend option(s) {', '.join(unknown)}"
                + "".join(f" ({hint})" for hint in hints)
                + f": {valid} (--backend-opt KEY=VALUE)"
            )
        values = {}
        for key in cls.model_fields:
            variable = cls.env.get(key)
            value = given.get(key) or (env.get(variable) if variable else None)
            if value:
                values[key] = value
        return values

    @classmethod
    def parse(cls, options: Mapping[str, str], environ: Mapping[str, str] | None = None) -> Self:
        """The options from ``--backend-opt`` pairs, the environment and the defaults;
        ``sos.errors.ValidationError`` naming the option when one is wrong."""
        values = cls.gather(options, environ)
        try:
            return cls.model_validate(values)
        except PydanticValidationError as exc:
            key, message = option_error(exc)
            if not key:  # the model's own check of several options at once
                raise ValidationError(f"{cls.label} backend: {message}") from None
            variable = cls.env.get(key)
            where = f"--backend-opt {key}" + (f" / {variable}" if variable else "")
            raise ValidationError(f"{where}={values.get(key, '')}: {message}") from None


def option_error(exc: PydanticValidationError) -> tuple[str, str]:
    """The option (empty: the model's own check) and what is wrong, of the first error."""
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error["loc"] else ""
    cause = error.get("ctx", {}).get("error")
    return key, str(cause) if cause is not None else error["msg"]


class NoOptions(BackendOptions):
    """A backend without options."""


@dataclass(frozen=True)
class BackendFlag:
    """A ``sos server`` flag that sets one option of one backend (``--router-port``)."""

    flag: str
    option: str
    help: str
    type: type[str] | type[int] = str


@dataclass(frozen=True)
class BackendPlugin:
    """What an entry point of group ``sos.backends`` names."""

    name: str
    #: ``"module:function"``, imported when the backend is created, or the function
    factory: str | BackendFactory
    #: None: the factory reads ``context.options`` itself (``register_backend`` with a
    #: bare factory); every built-in has a model, so unknown options are refused
    options: type[BackendOptions] | None = NoOptions
    flags: tuple[BackendFlag, ...] = ()
    #: one line for ``sos server --help``
    description: str = ""

    def load_factory(self) -> BackendFactory:
        if not isinstance(self.factory, str):
            return self.factory
        loaded: BackendFactory = _import(self.factory, f"backend {self.name!r}")
        return loaded

    def create(self, context: BackendContext) -> Backend:
        if self.options is not None:
            self.options.parse(context.options)  # refused before the backend is imported
        return self.load_factory()(context)


#: backends registered in this process (``register_backend``): they win over entry points
_registered: dict[str, BackendPlugin | str] = {}
_loaded: dict[str, BackendPlugin] = {}


def _import(target: str, what: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # a plug-in's import error, or anything its module raised
        raise ValidationError(f"{what} cannot be loaded from {target}: {exc}") from exc


@functools.cache
def _entry_points() -> dict[str, str]:
    """The installed packages' backends (read once: entry points change with installs)."""
    found: dict[str, str] = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTIN_BACKENDS and entry.value != BUILTIN_BACKENDS[entry.name]:
            log.warning(
                "backend plug-in %s = %s: the name is a built-in's", entry.name, entry.value
            )
            continue
        found.setdefault(entry.name, entry.value)
    return found


def _entries() -> dict[str, BackendPlugin | str]:
    """Every backend name -> its plug-in or where it is, without importing anything."""
    return {**BUILTIN_BACKENDS, **_entry_points(), **_registered}


def backend_names() -> list[str]:
    """Every backend's name, sorted (nothing is imported)."""
    return sorted(_entries())


def get_backend(name: str) -> BackendPlugin:
    """The plug-in of backend ``name`` (its module is imported now, its factory is not)."""
    entries = _entries()
    try:
        entry = entries[name]
    except KeyError:
        raise ValidationError(
            f"unknown backend {name!r}: choose one of {', '.join(sorted(entries))}"
        ) from None
    if isinstance(entry, BackendPlugin):
        return entry
    plugin = _loaded.get(entry)
    if plugin is None:
        loaded = _import(entry, f"backend {name!r}")
        if isinstance(loaded, BackendPlugin):
            plugin = loaded
        elif callable(loaded):  # a bare factory, as BACKENDS entries used to name
            plugin = BackendPlugin(name=name, factory=loaded, options=None)
        else:
            raise ValidationError(f"backend {name!r}: {entry} is not a BackendPlugin")
        _loaded[entry] = plugin
    return plugin


def register_backend(name: str, factory: str | BackendFactory | BackendPlugin) -> None:
    """Make backend ``name`` available in this process: a plug-in, a factory, or
    ``"module:attribute"`` naming either (imported when chosen)."""
    if isinstance(factory, BackendPlugin | str):
        _registered[name] = factory
    else:
        _registered[name] = BackendPlugin(name=name, factory=factory, options=None)


def create_backend(name: str, context: BackendContext) -> Backend:
    """The backend ``name``, made by its factory from ``context``."""
    return get_backend(name).create(context)
