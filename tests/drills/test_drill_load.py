"""Load drill: a steady load through the router against the deployed MovieLens example
while traffic moves 0/100 -> 50/50 -> 100/0 -> 50/50 -> 0/100 and a rollback follows.

Held: no request fails, in any phase or between them, and the split each phase served
(from the Sos-Revision header of the answers) is within 2 points of what was set. A phase
counts the requests sent after the server reported the new route as applied and before the
next change; the ones sent in between are counted for failures only."""

from __future__ import annotations

import time

import pytest
from drills_harness import Load, report, split_of, until
from drills_platform import SERVICE, Platform

from sos import Route, TrafficRoute

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PER_PHASE = 300  # requests counted per phase


def _applied(platform: Platform, route: dict[str, int]) -> bool:
    with platform.server.client() as client:
        status = client.get_service(SERVICE).status
    return {t.revision: t.percent for t in status.traffic if t.percent} == route


def _route(split: dict[str, int]) -> TrafficRoute:
    return TrafficRoute(routes=[Route(revision=r, percent=p) for r, p in split.items() if p])


def test_traffic_moves_and_a_rollback_under_load_lose_nothing(platform: Platform) -> None:
    v1, v2 = platform.v1, platform.v2
    phases = [
        ("0/100", {v1: 0, v2: 100}),
        ("50/50", {v1: 50, v2: 50}),
        ("100/0", {v1: 100, v2: 0}),
        ("50/50", {v1: 50, v2: 50}),
        ("0/100", {v1: 0, v2: 100}),
        ("rollback", {v1: 50, v2: 50}),  # the route before the last change
    ]
    rows: list[str] = []
    problems: list[str] = []
    users = 610  # the MovieLens users: every request asks for another one
    with Load(
        platform.server.router,
        platform.host,
        lambda i: f"/recs/for_user?user_id={1 + i % users}",
        workers=6,
    ) as load:
        for name, split in phases:
            wanted = {rev: pct for rev, pct in split.items() if pct}
            with platform.server.client() as client:
                changed = time.monotonic()
                if name == "rollback":
                    client.rollback(SERVICE)
                else:
                    client.set_traffic(SERVICE, _route(split))
            until(lambda w=wanted: _applied(platform, w), 60, f"route {name} to be applied")
            start = time.monotonic()
            until(lambda s=start: load.count_since(s) >= PER_PHASE, 120, f"{PER_PHASE} requests")
            end = time.monotonic()
            counted = load.between(start, end)
            seen = split_of(counted)
            worst = max(abs(seen.get(rev, 0.0) - pct) for rev, pct in split.items())
            rows.append(
                f"{name:>8}: set {' '.join(f'{pct}' for pct in split.values())}"
                f"  seen {' / '.join(f'{seen.get(rev, 0.0):.1f}' for rev in split)}"
                f"  over {len(counted)} requests (off by {worst:.1f} points;"
                f" applied {start - changed:.2f}s after the change)"
            )
            if worst > 2:
                problems.append(f"{name}: {seen} instead of {split}")
    results = load.results
    failed = load.failures()
    seconds = results[-1].ended - results[0].started
    report(
        "load: traffic 0/100 -> 50/50 -> 100/0 -> 50/50 -> 0/100, then a rollback",
        f"{len(results)} requests in {seconds:.1f}s ({len(results) / seconds:.0f}/s, 6 clients),"
        f" {len(failed)} failed",
        *rows,
    )
    assert not failed, [f"{r.status} {r.error}" for r in failed[:5]]
    assert not problems, problems
