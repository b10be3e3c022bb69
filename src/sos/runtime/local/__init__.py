"""The local runtime: revisions as processes on this machine, one shared router with
weighted splits and tags, a concurrency autoscaler and scale to zero.

``LocalBackend`` is what ``sos server --backend local`` uses (``create_backend`` is its
registry factory); the other names are its parts, public for benchmarks and for power
users who embed the router. See ``docs/sos/local-runtime.md``.
"""

from sos.runtime.local.autoscaler import Autoscaler, Decision
from sos.runtime.local.backend import LocalBackend, create_backend
from sos.runtime.local.router import Endpoint, RevisionTarget, Router, RoutingTable, ServiceRoute

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
