"""The local runtime: revisions as processes on this machine, one shared router with
weighted splits and tags, a concurrency autoscaler and scale to zero.

``LocalBackend`` is what ``sos server --backend local`` uses (``create_backend`` is its
registry factory, ``options.py`` its options and flags); the other names are its parts,
public for benchmarks and for power users who embed the router. See
``docs/sos/local-runtime.md``.

The names load on first use, so that the registry reads ``options.py`` (for the flags of
``sos server``) without importing the backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sos.runtime.local.autoscaler import Autoscaler, Decision
    from sos.runtime.local.backend import LocalBackend, create_backend
    from sos.runtime.local.ingress import Endpoint, RevisionTarget, RoutingTable, ServiceRoute
    from sos.runtime.local.ingress.python import Router

__all__ = [
    "Autoscaler",
    "Decision",
    "Endpoint",
    "LocalBackend",
    "RevisionTarget",
    "Router",
    "RoutingTable",
    "ServiceRoute",
    "create_backend",
]

_MODULES = {
    "Autoscaler": "autoscaler",
    "Decision": "autoscaler",
    "LocalBackend": "backend",
    "create_backend": "backend",
    "Endpoint": "ingress",
    "RevisionTarget": "ingress",
    "Router": "ingress.python",
    "RoutingTable": "ingress",
    "ServiceRoute": "ingress",
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
