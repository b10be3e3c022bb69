"""``Ingress``: what the local backend asks of a router's data path.

Two implementations: the Python router alone (``ingress/python``) and HAProxy programmed
at runtime with the Python router behind it (``ingress/haproxy``). ``create_ingress``
(``ingress/__init__.py``) builds one by name; the backend talks only to this interface.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from sos.models import ShadowComparison
from sos.runtime.local.ingress.table import RoutingTable
from sos.runtime.local.metrics import ConcurrencyMeter, MetricsCollector

__all__ = ["Ingress"]


class Ingress(Protocol):
    """The shared router: one listener for every service, routed by a ``RoutingTable``.

    - routing: ``update`` publishes a whole table (atomic: a request sees the old or the
      new one); ``settle`` waits until the data path routes by the last one;
    - activation (scale from zero): a request for a revision without a ready instance is
      held, ``on_cold(revision)`` asks for one, and the request goes on when one is ready,
      or gets a 503 that says why after ``activation_timeout`` seconds (or the revision's
      own ``hold_seconds``);
    - traffic per revision: ``metrics`` (request counters and latency per service,
      revision and tag), ``concurrency`` (the autoscaler's input), ``in_flight`` per
      instance (to drain one before it stops);
    - lifecycle: ``bind`` (take the port early: a port in use is an error at start-up),
      ``start``, ``close`` (``keep_serving``: leave the data path serving, for the next
      server to adopt, where the data path can);
    - shadow traffic: ``shadow_report`` (the comparisons of mirrored requests);
    - URLs handed out to users: ``service_url``, ``tag_url``, ``revision_url``; ``host``,
      ``port`` and ``domain`` as bound.
    """

    #: the data path's name: "python" or "haproxy"
    data_path: str
    host: str
    port: int
    domain: str
    on_cold: Callable[[str], None] | None
    activation_timeout: float
    #: who may read ``/metrics``: None, anyone; "" no one; else a bearer token
    metrics_token: str | None

    @property
    def table(self) -> RoutingTable:
        """The table given to ``update`` last."""
        ...

    @property
    def metrics(self) -> MetricsCollector: ...

    @property
    def meters(self) -> Mapping[str, ConcurrencyMeter]:
        """Requests in flight through the Python router per revision (held ones too)."""
        ...

    def bind(self) -> None: ...

    async def start(self) -> None: ...

    async def close(self, *, keep_serving: bool | None = None) -> None:
        """Stop serving. ``keep_serving``: leave a data path that can outlive the server
        (HAProxy with a state directory) serving, for the next server to adopt; None:
        the data path's own default."""
        ...

    def update(self, table: RoutingTable) -> None: ...

    async def settle(self) -> None: ...

    def concurrency(self, revision: str, now: float) -> float:
        """Average requests in flight at ``revision`` since the previous call."""
        ...

    def in_flight(self, instance: str) -> int:
        """Requests ``instance`` serves now (also after it left the table)."""
        ...

    def shadow_report(self, service: str) -> list[ShadowComparison]:
        """What ``service``'s shadow revisions answered next to its primaries, pair by
        pair (mirroring is the Python router's, on both data paths)."""
        ...

    def service_url(self, service: str) -> str: ...

    def tag_url(self, service: str, tag: str) -> str: ...

    def revision_url(self, revision: str) -> str: ...
