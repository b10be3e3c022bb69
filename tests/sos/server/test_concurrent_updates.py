"""Two clients changing one service at once never lose an update (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sos import Artifact, ConflictError, Revision, Service, TrafficRoute

if TYPE_CHECKING:
    from sos_server import RunningServer

SVC = "sfix-service"


def test_two_writers_with_the_same_version_one_wins_one_gets_409(
    sos_server: Callable[..., RunningServer], database_url: str
) -> None:
    server = sos_server(database_url=database_url)
    with server.client() as admin:
        admin.apply(Service(name=SVC, team="recs"))
    alice, bob = server.client(), server.client()
    read_a, read_b = alice.get_service(SVC), bob.get_service(SVC)
    assert read_a.resource_version == read_b.resource_version
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def write(name: str, client: object, service: Service) -> None:
        barrier.wait()
        try:
            client.apply(service.model_copy(update={"description": f"by {name}"}))  # type: ignore[attr-defined]
            outcomes[name] = "ok"
        except ConflictError as exc:
            assert "re-read it and retry" in exc.message
            outcomes[name] = "conflict"

    threads = [
        threading.Thread(target=write, args=("alice", alice, read_a)),
        threading.Thread(target=write, args=("bob", bob, read_b)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["conflict", "ok"]
    winner = next(name for name, outcome in outcomes.items() if outcome == "ok")
    loser = next(name for name, outcome in outcomes.items() if outcome == "conflict")
    current = alice.get_service(SVC)
    assert current.description == f"by {winner}"
    assert current.resource_version == (read_a.resource_version or 0) + 1
    # the loser re-reads and retries: both changes are now in the history, none lost
    retry = bob if loser == "bob" else alice
    fresh = retry.get_service(SVC)
    retry.apply(fresh.model_copy(update={"description": f"by {loser}"}))
    updates = [e for e in alice.history(SVC) if e.action == "service.updated"]
    assert [e.after["description"] for e in updates if e.after] == [f"by {loser}", f"by {winner}"]
    alice.close()
    bob.close()


def test_many_concurrent_traffic_changes_each_land_exactly_once(
    sos_server: Callable[..., RunningServer], database_url: str
) -> None:
    server = sos_server(database_url=database_url)
    with server.client() as admin:
        admin.apply(Service(name=SVC, team="recs"))
        for n in range(3):
            admin.create_revision(SVC, Revision(artifact=Artifact(name="a", version=f"{n}")))

    def shift(n: int) -> int:
        """Read-modify-write with retry on conflict, the way a careful client does it."""
        conflicts = 0
        with server.client() as client:
            while True:
                current = client.get_traffic(SVC)
                route = TrafficRoute.model_validate(
                    {
                        "routes": [{"revision": str(n % 3 + 1), "percent": 100}],
                        "resource_version": current.resource_version,
                    }
                )
                try:
                    client.set_traffic(SVC, route)
                    return conflicts
                except ConflictError:
                    conflicts += 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(shift, range(24)))
    with server.client() as client:
        changes = [e for e in client.history(SVC, limit=1000) if e.action == "traffic.changed"]
        # 24 user changes plus the automatic route of the first revision
        assert len(changes) == 25
        # each change's "before" is exactly the previous change's "after": no lost update
        ordered = list(reversed(changes))
        for earlier, later in itertools.pairwise(ordered):
            assert later.before == earlier.after
        service = client.get_service(SVC)
        assert service.resource_version == 1 + 3 + 24


def test_unconditional_writes_under_contention_all_land(
    sos_server: Callable[..., RunningServer], database_url: str
) -> None:
    """Without a resource version a write applies to whatever is there: never a spurious 409."""
    server = sos_server(database_url=database_url)
    with server.client() as admin:
        admin.apply(Service(name=SVC, team="recs"))
        admin.create_revision(SVC, Revision(artifact=Artifact(name="a", version="1")))
        admin.create_revision(SVC, Revision(artifact=Artifact(name="a", version="2")))

    def shift(n: int) -> None:
        with server.client() as client:
            client.set_traffic(SVC, {n % 2 + 1: 100})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(shift, range(40)))
    with server.client() as client:
        changes = [e for e in client.history(SVC, limit=1000) if e.action == "traffic.changed"]
        assert len(changes) == 41
        assert client.get_service(SVC).resource_version == 1 + 2 + 40
