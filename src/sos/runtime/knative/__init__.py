"""The Knative backend: SOS services as Knative Serving Services on Kubernetes.

``render_service`` / ``export_yaml`` turn an SOS service into a ``serving.knative.dev/v1``
Service manifest (pure functions); ``KnativeBackend`` applies and observes them with the
official ``kubernetes`` client. See ``docs/sos/knative.md``.

The backend (and with it the ``kubernetes`` client, slow to import) loads on first use,
so that rendering, ``sos export`` and every other ``sos`` command stay quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sos.runtime.knative.plan import ClusterState, Step, plan_apply
from sos.runtime.knative.render import export_yaml, render_service, runtime_image
from sos.runtime.knative.rules import check_webhook_rules
from sos.runtime.knative.settings import KnativeSettings
from sos.runtime.knative.status import observed_service

if TYPE_CHECKING:
    from sos.runtime.knative.backend import (
        FIELD_MANAGER,
        KnativeBackend,
        create_backend,
        map_api_error,
    )

__all__ = [
    "FIELD_MANAGER",
    "ClusterState",
    "KnativeBackend",
    "KnativeSettings",
    "Step",
    "check_webhook_rules",
    "create_backend",
    "export_yaml",
    "map_api_error",
    "observed_service",
    "plan_apply",
    "render_service",
    "runtime_image",
]

_FROM_BACKEND = frozenset({"FIELD_MANAGER", "KnativeBackend", "create_backend", "map_api_error"})


def __getattr__(name: str) -> Any:
    if name in _FROM_BACKEND:
        return getattr(importlib.import_module("sos.runtime.knative.backend"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
