"""The Python data path: ``Router`` (``router.py``, its control) and its HTTP/1.1 proxy
(``proxy.py``)."""

from sos.runtime.local.ingress.python.router import Router

__all__ = ["Router"]
