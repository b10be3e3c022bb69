"""What HAProxy must route for a routing table (pure): groups of servers per map key.

A routing table becomes *groups* of servers: each service's split (a ``roundrobin``
group, the split's percents divided across the revisions' ready instances as integer
weights, ``split_weights``) and each revision reached by tag or ``/r/`` (a ``leastconn``
group). A revision without a ready instance is its activator in the group (a listener of
the Python router that holds requests until an instance is ready).

A sticky split (``ServiceRoute.split_by``) adds one map key per percentile of the buckets,
``{service}+{0..99}``, each reaching its revision's group: ``sos.traffic.sticky_ranges``
gives each revision a whole number of percents, so a key's bucket (CRC-32 mod 10,000, as
``sos.traffic.bucket``) divided by 100 names its revision; HAProxy computes it with
``crc32,mod(10000),div(100)`` (``config.py``), and the map changes at runtime with the
split. ``{service}+`` names the key's fetch (``sticky_entries``). A service with shadow
revisions has no split key at all: its requests reach the Python router (HAProxy's
default backend), which splits them the same way and mirrors them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

from sos import traffic
from sos.runtime.local.ingress.table import ActivatorKey, RoutingTable

__all__ = [
    "MAX_WEIGHT",
    "REVISION",
    "SPLIT",
    "Route",
    "Upstream",
    "plan_routes",
    "split_weights",
    "sticky_entries",
    "sticky_sources",
]

#: HAProxy's largest server weight
MAX_WEIGHT = 256
SPLIT, REVISION = "r", "l"  # slot kinds: roundrobin (splits), leastconn (one revision)


@dataclass(frozen=True, order=True)
class Upstream:
    """A server of a group: a ready instance, or a revision's activator (``activator``)."""

    revision: str
    name: str  # the instance id; empty for an activator (named after its port later)
    host: str = "127.0.0.1"
    port: int = 0
    weight: int = 1
    activator: ActivatorKey | None = None


Group = tuple[Upstream, ...]


@dataclass(frozen=True)
class Route:
    """A map key (host, label, ``service@tag`` or ``revision@``) and the group it reaches."""

    key: str
    kind: str
    group: Group
    service: str
    tag: str = ""


def split_weights(parts: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Integer server weights for a split: ``parts`` is (percent, ready instances) per
    revision, the result each revision's instance weights, summing to shares exactly
    proportional to the percents. A revision without instances gets one weight (its
    activator); HAProxy's limit of 256 per server may leave some instances of a revision
    with a tiny share out of the split (never its share)."""
    counts = [max(1, n) for _, n in parts]
    k = max([1] + [math.ceil(n / p) for (p, _), n in zip(parts, counts, strict=True) if p > 0])
    while k > 1 and any(
        math.ceil(p * k / n) > MAX_WEIGHT for (p, _), n in zip(parts, counts, strict=True)
    ):
        k -= 1
    weights: list[list[int]] = []
    for (percent, _), n in zip(parts, counts, strict=True):
        total = percent * k
        used = max(1, min(n, total))
        base, extra = divmod(total, used)
        weights.append([base + 1] * extra + [base] * (used - extra) if total else [])
    divisor = reduce(math.gcd, [w for ws in weights for w in ws], 0) or 1
    return [[w // divisor for w in ws] for ws in weights]


def _revision_group(table: RoutingTable, revision: str, service: str, tag: str) -> Group:
    target = table.revisions.get(revision)
    if target is None or not target.endpoints:
        return (Upstream(revision, "", activator=(service, revision, tag)),)
    return tuple(sorted(Upstream(revision, e.instance, e.host, e.port) for e in target.endpoints))


def plan_routes(table: RoutingTable, domain: str) -> list[Route]:
    """What HAProxy must route for ``table``: one route per map key."""
    routes: dict[str, Route] = {}
    suffix = "." + domain
    for name, service in table.services.items():
        parts = [(rev, percent) for rev, percent in service.split if percent > 0]
        if not parts or service.shadows:
            continue  # no traffic yet, or mirrored: the Python router does it
        ready = []
        for revision, _ in parts:
            target = table.revisions.get(revision)
            ready.append(list(target.endpoints) if target else [])
        weights = split_weights([(p, len(e)) for (_, p), e in zip(parts, ready, strict=True)])
        group: list[Upstream] = []
        for (revision, _), endpoints, ws in zip(parts, ready, weights, strict=True):
            if not endpoints:
                group.append(Upstream(revision, "", weight=ws[0], activator=(name, revision, "")))
                continue
            for endpoint, weight in zip(endpoints, ws, strict=False):
                group.append(
                    Upstream(revision, endpoint.instance, endpoint.host, endpoint.port, weight)
                )
        split = Route(name + suffix, SPLIT, tuple(sorted(group)), name)
        routes[split.key] = split
        # /s/{name}/: the key ends with "/", which no Host header holds, so a service named
        # like the domain ("localhost") cannot take the platform's own path URLs
        routes[name + "/"] = Route(name + "/", SPLIT, split.group, name)
        if service.split_by is not None:
            for revision, first, end in traffic.sticky_ranges(dict(parts)):
                group = list(_revision_group(table, revision, name, ""))
                for percentile in range(first // 100, end // 100):
                    key = f"{name}+{percentile}"
                    routes[key] = Route(key, REVISION, tuple(group), name)
    for name, service in table.services.items():
        for tag, revision in service.tags.items():
            group = list(_revision_group(table, revision, name, tag))
            for key in (f"{tag}-{name}{suffix}", f"{tag}-{name}/"):
                routes.setdefault(key, Route(key, REVISION, tuple(group), name, tag))
            routes[f"{name}@{tag}"] = Route(f"{name}@{tag}", REVISION, tuple(group), name, tag)
    for revision, target in table.revisions.items():
        key = revision + "@"
        group = list(_revision_group(table, revision, target.service, ""))
        routes[key] = Route(key, REVISION, tuple(group), target.service)
    return list(routes.values())


def _sticky(table: RoutingTable) -> dict[str, tuple[str, str]]:
    """Service -> its sticky key, for the sticky services HAProxy splits itself."""
    return {
        name: service.split_by
        for name, service in table.services.items()
        if service.split_by is not None
        and not service.shadows
        and any(percent > 0 for _, percent in service.split)
    }


def sticky_sources(table: RoutingTable) -> set[tuple[str, str]]:
    """The (source, name) keys HAProxy's configuration must read for ``table``."""
    return set(_sticky(table).values())


def sticky_entries(table: RoutingTable, sources: Sequence[tuple[str, str]]) -> dict[str, str]:
    """``{service}+`` -> ``k{i}``: the sticky key of a service, as the index of its fetch
    in the configuration's ``sources``."""
    return {
        f"{name}+": f"k{sources.index(source)}"
        for name, source in _sticky(table).items()
        if source in sources
    }
