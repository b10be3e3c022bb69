"""The HAProxy data path: ``HAProxyRouter`` (``router.py``) and its parts: ``plan.py``
(routes as server groups), ``config.py`` (configuration and map), ``slots.py`` (the
runtime-API state machine), ``api.py`` (runtime API commands), ``process.py`` (processes
and the handover between servers), ``stats.py`` (request log and in-flight counts)."""

from sos.runtime.local.ingress.haproxy.api import HAProxyError
from sos.runtime.local.ingress.haproxy.router import HAProxyRouter

__all__ = ["HAProxyError", "HAProxyRouter"]
