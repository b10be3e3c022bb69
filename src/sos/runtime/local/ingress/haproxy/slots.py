"""The runtime-API state machine: slots of servers, and the map that routes to them.

Each group of servers (``plan.py``) lives in a *slot*, one of a pool of backends declared
in the configuration; one HAProxy map names the slot of every host, label, tag and
revision. A change fills fresh slots through the runtime API (``add server``), then swaps
the whole map at once (``prepare map`` / ``commit map``): each request sees the old table
or the new one, a request already in a slot finishes there, and no client connection is
closed. Slots that left the map are emptied once their requests are done. Only when a
pool runs out does HAProxy reload (``Slots.apply`` says so; the router reloads with
``layout``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sos.runtime.local.ingress.haproxy.api import RuntimeAPI
from sos.runtime.local.ingress.haproxy.config import Server
from sos.runtime.local.ingress.haproxy.plan import REVISION, SPLIT, Route

__all__ = ["SLOT_GRACE", "Resolved", "Slot", "Slots", "layout"]

#: a slot that left the map is emptied this long after, once its requests are done
SLOT_GRACE = 1.0

#: map key -> (its route, the route's servers as HAProxy names them)
Resolved = Mapping[str, tuple[Route, tuple[Server, ...]]]


@dataclass
class Slot:
    name: str
    servers: tuple[Server, ...] = ()
    #: when it left the map (None: in the map, or empty)
    unmapped_at: float | None = None
    deleted: set[str] = field(default_factory=set)


def layout(
    resolved: Resolved, extra: Mapping[str, str] | None = None
) -> tuple[dict[str, tuple[Server, ...]], dict[str, str]]:
    """Slots and map entries for a fresh configuration holding ``resolved`` (and the
    ``extra`` map entries, which name no slot: the sticky keys' fetches)."""
    slots: dict[str, tuple[Server, ...]] = {}
    names: dict[tuple[Server, ...], str] = {}
    counts = Counter[str]()
    for route, servers in resolved.values():
        if servers not in names:
            names[servers] = f"{route.kind}{counts[route.kind]}"
            counts[route.kind] += 1
            slots[names[servers]] = servers
    entries = {
        key: f"{names[servers]}/{route.service}/{route.tag}"
        for key, (route, servers) in resolved.items()
    }
    entries.update(extra or {})
    for servers in slots.values():
        for server in servers:
            if server.revision:
                entries[server.name + "!"] = server.revision
    return slots, entries


class Slots:
    """The slots of the HAProxy that serves now, and what its map routes to them."""

    def __init__(self, pool: int) -> None:
        #: slots of each kind in a configuration (doubled by ``grow``)
        self.pool = pool
        self.slots: dict[str, Slot] = {}
        self.by_group: dict[tuple[Server, ...], str] = {}
        #: the map's entries as HAProxy has them
        self.entries: dict[str, str] = {}
        self.revision_of: dict[str, str] = {}  # server name -> revision (for the log)
        self.route_of: dict[str, tuple[str, str]] = {}  # slot -> (service, tag)
        self.unmapped: dict[str, float] = {}  # instance -> when it left every mapped slot

    def padded(self, slots: Mapping[str, Sequence[Server]]) -> dict[str, tuple[Server, ...]]:
        """``slots`` with empty ones added up to the pool size of each kind."""
        full = {name: tuple(servers) for name, servers in slots.items()}
        for kind in (SPLIT, REVISION):
            have = sum(1 for name in full if name.startswith(kind))
            for i in range(have, max(have, self.pool)):
                full.setdefault(f"{kind}{i}", ())
        return full

    def reset(self, slots: Mapping[str, tuple[Server, ...]]) -> None:
        """The slots of a HAProxy just started with them."""
        self.slots = {name: Slot(name, servers) for name, servers in slots.items()}
        self.by_group = {s.servers: name for name, s in self.slots.items() if s.servers}

    def grow(self, resolved: Resolved) -> None:
        """Double the pool until ``resolved`` fits in a fresh configuration."""
        while True:
            self.pool *= 2
            wanted = {servers: route.kind for route, servers in resolved.values()}
            per_kind = Counter(wanted.values())
            if all(n <= self.pool for n in per_kind.values()):
                break

    def servers(self) -> frozenset[str]:
        """The names of every server in a slot."""
        return frozenset(s.name for slot in self.slots.values() for s in slot.servers)

    def draining(self) -> bool:
        """Whether a slot left the map and still has servers."""
        return any(s.unmapped_at is not None for s in self.slots.values())

    def routes_to(self, instance: str) -> bool:
        """Whether a slot in the map holds ``instance``."""
        return any(
            slot.unmapped_at is None and any(s.name == instance for s in slot.servers)
            for slot in self.slots.values()
        )

    async def apply(
        self,
        resolved: Resolved,
        api: RuntimeAPI,
        map_path: Path,
        clock: Callable[[], float],
        extra: Mapping[str, str] | None = None,
    ) -> bool:
        """Route by ``resolved`` (and the ``extra`` map entries): fill fresh slots, then
        swap the map. False (nothing changed) when a pool has too few free slots: HAProxy
        must reload with more."""
        wanted = {servers: route.kind for route, servers in resolved.values()}
        fresh = [servers for servers in wanted if servers not in self.by_group]
        free = {
            kind: [
                n
                for n, s in sorted(self.slots.items(), key=lambda kv: int(kv[0][1:]))
                if n.startswith(kind) and not s.servers
            ]
            for kind in (SPLIT, REVISION)
        }
        need = Counter(wanted[servers] for servers in fresh)
        if any(need[kind] > len(free[kind]) for kind in need):
            return False
        for servers in fresh:
            name = free[wanted[servers]].pop(0)
            for server in servers:
                await api.add_server(name, server)
            self.slots[name] = Slot(name, servers)
            self.by_group[servers] = name
        now = clock()
        mapped: set[str] = set()
        routes_of: dict[str, tuple[str, str]] = {}
        entries: dict[str, str] = {}
        for route, servers in resolved.values():
            name = self.by_group[servers]
            mapped.add(name)
            entries[route.key] = f"{name}/{route.service}/{route.tag}"
            routes_of.setdefault(name, (route.service, route.tag))
        entries.update(extra or {})
        for slot in self.slots.values():
            for server in slot.servers:
                if server.revision:
                    entries[server.name + "!"] = server.revision
                    self.revision_of[server.name] = server.revision
        if entries != self.entries:
            await api.commit_map(map_path, entries)
            self.entries = dict(entries)
        self.route_of = routes_of
        for name, slot in self.slots.items():
            if name in mapped:
                slot.unmapped_at = None
            elif slot.servers and slot.unmapped_at is None:
                slot.unmapped_at = now
        serving = {s.name for n in mapped for s in self.slots[n].servers}
        for slot in self.slots.values():
            for server in slot.servers:
                if server.name not in serving and server.revision:
                    self.unmapped.setdefault(server.name, now)
        for instance in serving:
            self.unmapped.pop(instance, None)
        return True

    def forget_unmapped(self, taken: float) -> None:
        """Forget instances deleted from every slot before stats read at ``taken``."""
        for instance, removed in list(self.unmapped.items()):
            gone = not any(s.name == instance for slot in self.slots.values() for s in slot.servers)
            if gone and taken > removed:
                del self.unmapped[instance]

    async def empty(
        self, api: RuntimeAPI, in_flight: Mapping[tuple[str, str], int], read_at: float
    ) -> bool:
        """Delete the servers of slots that left the map once they serve nothing (by the
        stats read at ``read_at``); whether a slot was emptied."""
        changed = False
        for name, slot in self.slots.items():
            if slot.unmapped_at is None or not slot.servers:
                continue
            if read_at < slot.unmapped_at + SLOT_GRACE:
                continue
            if any(in_flight.get((name, s.name), 0) for s in slot.servers):
                continue
            for server in slot.servers:
                if server.name in slot.deleted:
                    continue
                if await api.delete_server(name, server.name):
                    slot.deleted.add(server.name)
            if len(slot.deleted) == len(slot.servers):
                self.by_group.pop(slot.servers, None)
                self.slots[name] = Slot(name)
                changed = True
        if changed:
            live = self.servers()
            for gone in [name for name in self.revision_of if name not in live]:
                del self.revision_of[gone]
        return changed

    def activator_ports(self) -> set[int]:
        """The ports of the Python router's activators that a slot holds."""
        return {
            int(s.name[2:])
            for slot in self.slots.values()
            for s in slot.servers
            if s.name.startswith("_a")
        }
