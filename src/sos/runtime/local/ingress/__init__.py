"""The local runtime's ingress: one shared router for every service.

- ``base.py``: the ``Ingress`` interface the backend talks to;
- ``table.py``: the routing table every data path serves;
- ``listen.py``: the listening socket;
- ``python/``: the Python router (``router.py``) and its HTTP/1.1 proxy (``proxy.py``);
- ``haproxy/``: HAProxy programmed at runtime, the Python router behind it.

``create_ingress(data_path, ...)`` builds one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypedDict, Unpack

from sos.errors import ValidationError
from sos.runtime.local.ingress.base import Ingress
from sos.runtime.local.ingress.haproxy import HAProxyRouter
from sos.runtime.local.ingress.python import Router
from sos.runtime.local.ingress.table import (
    ActivatorKey,
    Endpoint,
    RevisionTarget,
    RoutingTable,
    ServiceRoute,
    ShadowTarget,
    SmoothWeighted,
    sticky_key,
)
from sos.runtime.local.options import DATA_PATHS

__all__ = [
    "DATA_PATHS",
    "ActivatorKey",
    "Endpoint",
    "Ingress",
    "RevisionTarget",
    "RouterOptions",
    "RoutingTable",
    "ServiceRoute",
    "ShadowTarget",
    "SmoothWeighted",
    "create_ingress",
    "sticky_key",
]

#: the router's data paths: HAProxy programmed at runtime, or the Python router alone


class RouterOptions(TypedDict, total=False):
    """The Python router's settings, which every data path takes (see ``Router``)."""

    domain: str
    activation_timeout: float
    request_timeout: float
    on_cold: Callable[[str], None] | None
    clock: Callable[[], float]


def create_ingress(
    data_path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    state_dir: Path | None = None,
    metrics_token: str | None = None,
    shadow_file: Path | None = None,
    **options: Unpack[RouterOptions],
) -> Ingress:
    """The ingress of ``data_path`` (one of ``DATA_PATHS``), listening on ``host:port``.
    ``state_dir``: where a data path that can outlive the server (HAProxy) names itself
    for the next server to adopt; ``metrics_token``: who may read ``/metrics`` (see
    ``Ingress.metrics_token``); ``shadow_file``: where the shadow comparisons are kept
    across restarts."""
    ingress: Ingress
    if data_path == "haproxy":
        # the Python router behind HAProxy: the activator, the router's own answers, and
        # the services with shadows
        python = Router(**options)
        ingress = HAProxyRouter(python, host=host, port=port, state_dir=state_dir)
    elif data_path == "python":
        python = ingress = Router(host=host, port=port, **options)
    else:
        raise ValidationError(f"router {data_path!r} is unknown: use haproxy or python")
    if shadow_file is not None:
        python.mirror.load(shadow_file)
    ingress.metrics_token = metrics_token
    return ingress
