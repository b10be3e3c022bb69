"""The SOS API server (FastAPI): ``create_app`` builds it, ``sos server`` runs it."""

from sos.runtime.registry import BackendContext, create_backend, register_backend
from sos.server.app import API_PREFIX, ROUTER_MODULES, AdminToken, ServerState, create_app
from sos.server.backends import BACKENDS
from sos.server.core import ArtifactResolver, ControlPlane

__all__ = [
    "API_PREFIX",
    "BACKENDS",
    "ROUTER_MODULES",
    "AdminToken",
    "ArtifactResolver",
    "BackendContext",
    "ControlPlane",
    "ServerState",
    "create_app",
    "create_backend",
    "register_backend",
]
