"""The local runtime: revisions as processes on this machine, one shared router with
weighted splits and tags, a concurrency autoscaler and scale to zero.

``LocalBackend`` is what the server uses; the other names are its parts, public for
benchmarks and for power users who embed the router.
"""

from sos.runtime.local.autoscaler import Autoscaler, Decision
from sos.runtime.local.router import Endpoint, RevisionTarget, Router, RoutingTable, ServiceRoute

__all__ = [
    "Autoscaler",
    "Decision",
    "Endpoint",
    "RevisionTarget",
    "Router",
    "RoutingTable",
    "ServiceRoute",
]
