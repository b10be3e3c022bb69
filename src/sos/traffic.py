"""Revision references and traffic routes: the one place their rules live.

A revision id is ``{service}-{number:05d}`` (``sos.models.revision_id`` makes one,
``revision_parts`` takes one apart, ``normalize_revision_ref`` reads what people write: ``3``,
``00003`` or the id). A traffic route is a list of (revision, percent, tag) that sums to 100
(the model checks what needs no context). What needs the service's revisions is here:
resolving ``latest``, normalising references, refusing two untagged routes to one revision,
refusing revisions that do not exist, merging a route into one share per revision, and
saying a route the way people write it. The server, the CLI, both runtimes and the Knative
renderer call these; the web UI asks the server (a dry run) instead of restating them.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence

from sos.errors import ValidationError
from sos.models import (
    Route,
    Shadow,
    TrafficRoute,
    normalize_revision_ref,
    revision_id,
    revision_parts,
)

__all__ = [
    "BUCKETS",
    "LATEST",
    "bucket",
    "describe",
    "normalize",
    "parse_routes",
    "require_existing",
    "revision_id",
    "revision_parts",
    "shares",
    "sticky_ranges",
    "sticky_revision",
    "tagged",
    "with_share",
]

#: the reference that means "the newest revision" (in a deploy: the one it created)
LATEST = "latest"

_ROUTE_ARG = re.compile(r"^(?P<ref>[A-Za-z0-9-]+)=(?P<percent>\d{1,3})(?:@(?P<tag>[a-z0-9-]+))?$")


def _ref(service: str, ref: str, latest: str | None, where: str) -> str:
    if ref == LATEST:
        if latest is None:
            raise ValidationError(
                f"{where} names revision 'latest' but service {service!r} has no revision yet",
                details={"field": where},
            )
        return latest
    try:
        return normalize_revision_ref(service, ref)
    except ValueError as exc:
        raise ValidationError(f"{where}: {exc}", details={"field": where}) from None


def normalize(service: str, route: TrafficRoute, *, latest: str | None = None) -> TrafficRoute:
    """``route`` with every reference an id (``latest`` resolved to ``latest``), or a
    ``ValidationError`` naming the route at fault. Two untagged routes to one revision are
    refused: they mean one share written twice."""
    routes: list[Route] = []
    for index, r in enumerate(route.routes):
        rev = _ref(service, r.revision, latest, f"routes[{index}].revision")
        routes.append(r if rev == r.revision else r.model_copy(update={"revision": rev}))
    untagged = [r.revision for r in routes if not r.tag]
    twice = sorted({rev for rev in untagged if untagged.count(rev) > 1})
    if twice:
        raise ValidationError(
            f"revision {twice[0]} has two untagged routes; merge them into one",
            details={"field": "routes"},
        )
    shadows: list[Shadow] = []
    serving = {r.revision for r in routes if r.percent > 0}
    for index, mirror in enumerate(route.shadow):
        where = f"shadow[{index}].revision"
        rev = _ref(service, mirror.revision, latest, where)
        if rev in serving:
            raise ValidationError(
                f"{where}: revision {revision_parts(rev)[1]} serves traffic already; a shadow "
                "is a revision with no share of its own, whose answers are only compared",
                details={"field": where},
            )
        if rev in {m.revision for m in shadows}:
            raise ValidationError(
                f"{where}: revision {revision_parts(rev)[1]} is shadowed twice; keep one",
                details={"field": where},
            )
        shadows.append(mirror.model_copy(update={"revision": rev}))
    return TrafficRoute(
        routes=routes,
        split_by=route.split_by,
        shadow=shadows,
        resource_version=route.resource_version,
    )


def require_existing(service: str, route: TrafficRoute, existing: Collection[str]) -> None:
    """Refuse a normalized route that names revisions ``service`` does not have."""
    named = {r.revision for r in route.routes} | {m.revision for m in route.shadow}
    missing = sorted(named - set(existing))
    if missing:
        raise ValidationError(
            f"service {service!r} has no revision {', '.join(missing)}: list them with "
            f"`sos revisions {service}`",
            details={"field": "routes", "missing": missing},
        )


def shares(service: str, route: TrafficRoute | None) -> dict[str, int]:
    """Revision id -> its percent of the traffic, tagged and untagged routes merged, in the
    order the route names them (references normalized; ``{}`` for no route)."""
    merged: dict[str, int] = {}
    for r in route.routes if route is not None else ():
        rev = normalize_revision_ref(service, r.revision)
        merged[rev] = merged.get(rev, 0) + r.percent
    return merged


def tagged(service: str, route: TrafficRoute | None) -> dict[str, str]:
    """Tag -> the revision id it addresses."""
    return {
        r.tag: normalize_revision_ref(service, r.revision)
        for r in (route.routes if route is not None else ())
        if r.tag
    }


def with_share(service: str, base: TrafficRoute, revision: str, percent: int) -> TrafficRoute:
    """``base`` with ``revision`` at ``percent``: the other revisions share the rest in
    the proportions they have in ``base`` (largest remainders, so it sums to 100), and
    every tag stays on its revision (at 0%: the shares are on the untagged routes)."""
    others = {rev: pct for rev, pct in shares(service, base).items() if rev != revision}
    rest = 100 - percent
    weight = sum(others.values())
    if rest and not weight:
        raise ValidationError(
            f"no other revision has traffic to keep {rest}% of it; give {revision} all of it",
            details={"field": "percent"},
        )
    exact = {rev: rest * pct / weight for rev, pct in others.items()} if rest else {}
    split = {rev: int(x) for rev, x in exact.items()}
    by_remainder = sorted(exact, key=lambda rev: exact[rev] - split[rev], reverse=True)
    for rev in by_remainder[: rest - sum(split.values())]:
        split[rev] += 1
    routes = [Route(revision=revision, percent=percent)] if percent else []
    routes += [Route(revision=rev, percent=pct) for rev, pct in split.items() if pct]
    tags = tagged(service, base)
    routes += [Route(revision=rev, percent=0, tag=tag) for tag, rev in tags.items()]
    shadow = [m for m in base.shadow if normalize_revision_ref(service, m.revision) != revision]
    return TrafficRoute(routes=routes, split_by=base.split_by, shadow=shadow)


#: a sticky split's resolution: a key falls in one of 10,000 buckets (0.01% each)
BUCKETS = 10_000


def bucket(key: str) -> int:
    """The bucket of a sticky key: CRC-32 of its UTF-8 bytes, modulo ``BUCKETS``. Both data
    paths compute it the same way (HAProxy: ``crc32,mod(10000)``), so they agree on every
    key's revision."""
    return zlib.crc32(key.encode()) % BUCKETS


def sticky_ranges(split: Mapping[str, int]) -> list[tuple[str, int, int]]:
    """(revision, first bucket, last bucket + 1) for a split's revisions with a share, in
    revision order (oldest first), each as wide as its percent. Moving shares between
    neighbours moves only the buckets between them: 90/10 -> 80/20 reassigns 10% of keys."""
    ranges = []
    start = 0
    for revision in sorted(split, key=lambda rev: revision_parts(rev)[1]):
        width = split[revision] * BUCKETS // 100
        if width:
            ranges.append((revision, start, start + width))
            start += width
    return ranges


def sticky_revision(ranges: Sequence[tuple[str, int, int]], key: str) -> str | None:
    """The revision a key goes to (None for an empty split)."""
    at = bucket(key)
    return next((rev for rev, first, end in ranges if first <= at < end), None)


def describe(routes: Iterable[Route] | TrafficRoute | None) -> str:
    """``00003=90 00002=10@old``: a route as people write it (``no traffic`` for none),
    with ``by header:X-User-Id`` when sticky and ``shadow 00004=50%`` when mirrored."""
    if routes is None:
        return "no traffic"
    items = routes.routes if isinstance(routes, TrafficRoute) else routes
    text = " ".join(
        f"{revision_parts(r.revision)[1]}={r.percent}" + (f"@{r.tag}" if r.tag else "")
        for r in items
    )
    if isinstance(routes, TrafficRoute):
        if routes.split_by:
            text += f" by {routes.split_by}"
        if routes.shadow:
            text += " shadow " + " ".join(
                f"{revision_parts(m.revision)[1]}={m.percent}%" for m in routes.shadow
            )
    return text


def parse_routes(service: str, args: Iterable[str], latest: str | None) -> list[Route]:
    """``["3=90", "2=10@old"]`` -> routes (the command line's form). Raises ValueError with
    a message for people."""
    routes = []
    for arg in args:
        match = _ROUTE_ARG.match(arg.strip())
        if not match:
            raise ValueError(
                f"{arg!r} is not a route: write REVISION=PERCENT or REVISION=PERCENT@TAG, "
                "like 3=90 or 00004=10@canary"
            )
        ref = match["ref"]
        if ref == LATEST:
            if latest is None:
                raise ValueError("the service has no revisions yet, so 'latest' names none")
            ref = latest
        revision = normalize_revision_ref(service, ref)
        routes.append(Route(revision=revision, percent=int(match["percent"]), tag=match["tag"]))
    return routes
