"""The backend registry: ``--backend NAME`` / ``SOS_BACKEND`` picks an entry here.

An entry maps a name to ``"module:factory"``; the factory takes a ``BackendContext`` and
returns a ``sos.runtime.base.Backend``. Modules are imported only when chosen, so a backend
with optional dependencies (knative needs ``kubernetes``) costs nothing when unused.
Plug-ins register more with ``register_backend``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sos.errors import ValidationError
from sos.runtime.base import Backend
from sos.runtime.fake import FakeBackend

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "ArtifactPath",
    "BackendContext",
    "BackendFactory",
    "create_backend",
    "register_backend",
]

#: digest -> local path of the artifact file (given by the artifact store when configured)
ArtifactPath = Callable[[str], Path]


@dataclass(frozen=True)
class BackendContext:
    """What a backend factory gets from the server."""

    data_dir: Path
    #: ``--backend-opt key=value`` pairs, e.g. ``router_port=8080`` or ``namespace=prod``
    options: Mapping[str, str] = field(default_factory=dict)
    #: resolves an artifact digest to a file; None until an artifact store is configured
    artifact_path: ArtifactPath | None = None
    #: the artifact store object itself (``sos.artifacts``), when configured
    artifact_store: object | None = None


BackendFactory = Callable[[BackendContext], Backend]


def fake_backend(context: BackendContext) -> Backend:
    return FakeBackend(domain=context.options.get("domain", "sos.invalid"))


BACKENDS: dict[str, str | BackendFactory] = {
    "fake": fake_backend,
    "local": "sos.runtime.local:create_backend",
    "knative": "sos.runtime.knative:create_backend",
}

#: what ``sos server`` runs when neither --backend nor SOS_BACKEND says
DEFAULT_BACKEND = "local"


def register_backend(name: str, factory: str | BackendFactory) -> None:
    BACKENDS[name] = factory


def create_backend(name: str, context: BackendContext) -> Backend:
    try:
        entry = BACKENDS[name]
    except KeyError:
        raise ValidationError(
            f"unknown backend {name!r}: choose one of {', '.join(sorted(BACKENDS))}"
        ) from None
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        try:
            factory: BackendFactory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValidationError(f"backend {name!r} cannot be loaded from {entry}: {exc}") from exc
    else:
        factory = entry
    return factory(context)
