"""Where the backend registry used to live: it is ``sos.runtime.registry`` now (the runtime
layer, next to the backends). These names stay importable from here."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from sos.runtime.registry import (
    DEFAULT_BACKEND,
    ArtifactPath,
    BackendContext,
    BackendFactory,
    BackendPlugin,
    backend_names,
    create_backend,
    get_backend,
    register_backend,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "ArtifactPath",
    "BackendContext",
    "BackendFactory",
    "create_backend",
    "register_backend",
]


class _Backends(Mapping[str, BackendPlugin]):
    """Every backend by name, read-only (add one with ``register_backend`` or an entry
    point); a plug-in module is imported when its backend is looked up."""

    def __getitem__(self, name: str) -> BackendPlugin:
        if name not in backend_names():
            raise KeyError(name)
        return get_backend(name)

    def __iter__(self) -> Iterator[str]:
        return iter(backend_names())

    def __len__(self) -> int:
        return len(backend_names())


BACKENDS: Mapping[str, BackendPlugin] = _Backends()
