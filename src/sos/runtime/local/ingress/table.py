"""The routing table both data paths serve: what every ingress is given by ``update``.

A table is an immutable snapshot: each service's routing policy (``ServiceRoute``: its
weighted split and tags) and each revision's ready instances (``RevisionTarget``). The
Python router resolves requests against it directly; HAProxy's planner
(``ingress/haproxy/plan.py``) turns it into server groups and map entries.

Where routing policies go: a service's policy is its ``ServiceRoute``, read by both data
paths from the same table. Sticky splits (``split_by``: a header, query parameter or
cookie whose value picks the revision by ``sos.traffic.sticky_revision``) and shadow
revisions (``shadows``: a mirrored copy of a share of the requests) are fields there; the
Python router reads the key with ``sticky_key`` (the same rule as HAProxy's fetches) and
picks by ``RoutingTable.sticky`` when the request carries it, by
``RoutingTable.balancers`` otherwise; ``plan_routes`` renders the ranges into HAProxy's
map, and sends a service with shadows through the Python router, which mirrors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sos import traffic

if TYPE_CHECKING:
    from sos.runtime.local.ingress.python.proxy import UpstreamConnection

__all__ = [
    "ActivatorKey",
    "Endpoint",
    "RevisionTarget",
    "RoutingTable",
    "ServiceRoute",
    "ShadowTarget",
    "SmoothWeighted",
    "sticky_key",
]

#: (service, revision, tag) of requests an activator listener holds for one revision
ActivatorKey = tuple[str, str, str]


class Endpoint:
    """One ready instance as the router sees it: an address, its load, idle connections."""

    __slots__ = ("host", "idle", "in_flight", "instance", "port", "revision")

    def __init__(self, instance: str, revision: str, port: int, host: str = "127.0.0.1") -> None:
        self.instance = instance
        self.revision = revision
        self.host = host
        self.port = port
        self.in_flight = 0
        self.idle: list[tuple[float, UpstreamConnection]] = []

    def __repr__(self) -> str:
        return f"Endpoint({self.instance!r}, {self.host}:{self.port})"


class SmoothWeighted:
    """Smooth weighted round-robin (nginx's): exact shares even over a few requests.

    Over any ``sum(weights)`` consecutive picks each name is chosen exactly its weight
    times, and the picks are spread out rather than bunched.
    """

    def __init__(self, weights: Iterable[tuple[str, int]]) -> None:
        pairs = [(name, weight) for name, weight in weights if weight > 0]
        self.names = [name for name, _ in pairs]
        self.weights = [weight for _, weight in pairs]
        self.total = sum(self.weights)
        self._current = [0] * len(pairs)

    def key(self) -> tuple[tuple[str, int], ...]:
        return tuple(zip(self.names, self.weights, strict=True))

    def pick(self) -> str | None:
        if len(self.names) < 2:
            return self.names[0] if self.names else None
        current = self._current
        best = 0
        for i, weight in enumerate(self.weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= self.total
        return self.names[best]


@dataclass(frozen=True)
class RevisionTarget:
    """A revision's ready instances; ``unavailable`` says why there is none to wait for."""

    id: str
    service: str
    endpoints: tuple[Endpoint, ...] = ()
    unavailable: str | None = None
    #: how long the activator holds a request for it (its start-up budget); None: the
    #: router's ``activation_timeout``
    hold_seconds: float | None = None


@dataclass(frozen=True)
class ShadowTarget:
    """A revision that gets a mirrored copy of ``percent``% of the service's split
    requests (``items_path``: where its answers' item ids are, for the comparison)."""

    revision: str
    percent: int
    items_path: str | None = None


@dataclass(frozen=True)
class ServiceRoute:
    """A service's routing policy: its split (revision id -> percent), tags (tag ->
    revision id), the sticky key (``split_by``: (source, name), source one of header,
    query, cookie; None: split per request) and its shadow revisions."""

    name: str
    split: tuple[tuple[str, int], ...]
    tags: Mapping[str, str] = field(default_factory=dict)
    split_by: tuple[str, str] | None = None
    shadows: tuple[ShadowTarget, ...] = ()


def sticky_key(source: str, name: str, url: bytes, head: list[bytes]) -> str | None:
    """A request's sticky key, read as HAProxy reads it (so both data paths agree):
    ``header``: the full value of the header's last occurrence (``req.fhdr``);
    ``query``: the raw (not URL-decoded) value of the parameter's first occurrence, the
    query ending at ``&`` or ``;`` (``url_param``); ``cookie``: the value of the cookie's
    last occurrence (``req.cook``). ``head`` holds name, ": ", value, CRLF per header. An
    absent or empty key is None (the request is split per request)."""
    found: bytes | None = None
    if source == "query":
        cut = url.find(b"?")
        if cut < 0:
            return None
        wanted = name.encode() + b"="
        for part in url[cut + 1 :].replace(b";", b"&").split(b"&"):
            if part.startswith(wanted):
                found = part[len(wanted) :]
                break
    else:
        header = (name if source == "header" else "cookie").lower().encode()
        for i in range(0, len(head) - 2, 4):
            if head[i].lower() != header:
                continue
            value = head[i + 2].strip()
            if source == "header":
                found = value
                continue
            wanted = name.encode() + b"="
            for cookie in value.split(b";"):
                cookie = cookie.strip()
                if cookie.startswith(wanted):
                    found = cookie[len(wanted) :]
    # UTF-8 (invalid bytes replaced): ``sos.traffic.bucket`` hashes the UTF-8 bytes
    return found.decode("utf-8", "replace") if found else None


class RoutingTable:
    """An immutable snapshot of every route; the router swaps whole tables."""

    def __init__(
        self,
        services: Iterable[ServiceRoute] = (),
        revisions: Iterable[RevisionTarget] = (),
        *,
        previous: RoutingTable | None = None,
    ) -> None:
        self.services: dict[str, ServiceRoute] = {s.name: s for s in services}
        self.revisions: dict[str, RevisionTarget] = {r.id: r for r in revisions}
        #: host label ("svc" or "tag-svc") -> (service, tagged revision or None, tag)
        self.labels: dict[str, tuple[str, str | None, str]] = {}
        self.balancers: dict[str, SmoothWeighted] = {}
        #: sticky services: their buckets' ranges (``sos.traffic.sticky_ranges``)
        self.sticky: dict[str, list[tuple[str, int, int]]] = {}
        #: raw Host header -> host label (a cache filled by the router)
        self.hosts: dict[bytes, tuple[str | None]] = {}
        for route in self.services.values():
            self.labels[route.name] = (route.name, None, "")
            for tag, revision in route.tags.items():
                self.labels.setdefault(f"{tag}-{route.name}", (route.name, revision, tag))
            balancer = SmoothWeighted(route.split)
            old = previous.balancers.get(route.name) if previous else None
            # keep the rotation going when only instances changed, so shares stay exact
            self.balancers[route.name] = old if old and old.key() == balancer.key() else balancer
            if route.split_by is not None:
                self.sticky[route.name] = traffic.sticky_ranges(dict(route.split))
