"""One driver per running rollout, and no writes while nothing changes.

Servers sharing a database hold a lease on the rollouts they drive: first two drivers on
one database (SQLite and PostgreSQL) with a clock moved by hand, then two real servers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sos_harness import until
from sos_server import deploy_canary_ready
from sqlalchemy import event

from sos import Client, ConflictError, Rollout
from sos import traffic as rules
from sos.models import Artifact, RevisionSpec, RolloutCheck, ServiceSpec, Token
from sos.runtime.fake import FakeBackend
from sos.server.core import ControlPlane
from sos.server.rollouts import RolloutDriver, start
from sos.store import Store
from sos.store.rollouts import RolloutTable, StoredRollout

if TYPE_CHECKING:
    from sos_server import RunningServer

SVC = "shop"
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
ADMIN = Token(id="admin", name="admin", role="admin", created_at=T0)
TOKEN = "sos_lease-test-admin-token"


class Clock:
    """Both servers' clock: it moves only when told."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stores(database_url: str, clock: Clock) -> Iterator[tuple[Store, Store]]:
    """Two stores on one database, as two servers have: service shop with revision 1 at
    100% and revision 2."""
    first, second = Store(database_url, clock=clock), Store(database_url, clock=clock)
    first.migrate()
    first.create_service(ServiceSpec(name=SVC, team="recs"), actor="t")
    for version in (1, 2):
        spec = RevisionSpec(artifact=Artifact(name="a", version=str(version)))
        first.create_revision(SVC, spec, expected_version=version, actor="t")
    yield first, second
    first.close()
    second.close()


def driver(store: Store, name: str, calls: list[str] | None = None) -> RolloutDriver:
    """A driver of the rollouts in ``store`` with a lease of 15 s; each rollout it moves
    is noted in ``calls``."""
    made = RolloutDriver(ControlPlane(store), RolloutTable(store), tick=1, lease=15, name=name)
    if calls is not None:
        inner = made.step

        def step(stored: StoredRollout, check: RolloutCheck | None) -> None:
            calls.append(name)
            inner(stored, check)

        made.step = step  # type: ignore[method-assign]
    return made


def begin(store: Store, *, min_requests: int = 0) -> None:
    """A rollout of revision 2 in two steps of 60 s, stepping on time."""
    spec = Rollout(to="2", steps=[50, 100], step_seconds=60, min_requests=min_requests)
    start(ControlPlane(store), RolloutTable(store), ADMIN, SVC, spec, metrics_available=True)


def stored(store: Store) -> StoredRollout:
    found = RolloutTable(store).get(SVC)
    assert found is not None
    return found


async def test_one_driver_moves_a_rollout_until_its_lease_runs_out(
    stores: tuple[Store, Store], clock: Clock
) -> None:
    first, second = stores
    calls: list[str] = []
    a, b = driver(first, "a", calls), driver(second, "b", calls)
    begin(first)
    await a.tick_once()  # a new rollout: the first to look takes it, its step goes on
    await b.tick_once()
    row = stored(first)
    assert (row.driver, row.lease_until) == ("a", T0 + timedelta(seconds=15))
    assert row.status.step_started_at == T0 and calls == ["a"]
    for _ in range(13):  # 65 s: a renews its lease and takes the step at 60 s
        clock.advance(5)
        await b.tick_once()
        await a.tick_once()
    row = stored(first)
    assert set(calls) == {"a"} and row.driver == "a"
    assert (row.status.step, row.status.percent) == (1, 100)

    # a stops without a word (a crash): b waits for its lease to run out, then takes over
    assert row.lease_until is not None
    clock.advance(5)
    await b.tick_once()
    assert stored(first).driver == "a" and "b" not in calls
    clock.now = row.lease_until - timedelta(milliseconds=1)
    await b.tick_once()
    assert stored(first).driver == "a", "a lease runs to its end"
    clock.now = row.lease_until
    await b.tick_once()
    row = stored(first)
    assert row.driver == "b" and "b" in calls
    assert row.status.step_started_at == clock.now  # the step starts again
    assert (row.status.step, row.status.state) == (1, "running")

    # a comes back: the rollout is b's now
    calls.clear()
    await a.tick_once()
    assert calls == [] and stored(first).version == row.version
    clock.advance(61)
    await b.tick_once()
    done = stored(second).status
    assert done.state == "succeeded" and calls == ["b"]
    assert rules.shares(SVC, second.get_service(SVC).traffic) == {f"{SVC}-00002": 100}


async def test_a_driver_that_shuts_down_lets_its_rollouts_go(
    stores: tuple[Store, Store], clock: Clock
) -> None:
    first, second = stores
    a, b = driver(first, "a"), driver(second, "b")
    begin(first)
    await a.tick_once()
    a.table.release("a")
    clock.advance(1)
    await b.tick_once()
    row = stored(second)
    assert row.driver == "b" and row.status.step_started_at == clock.now  # at once, restarted


def test_exactly_one_server_takes_a_free_rollout(stores: tuple[Store, Store]) -> None:
    first, second = stores
    begin(first)
    seen = stored(first)
    barrier = threading.Barrier(2)
    won: dict[str, bool] = {}

    def claim(store: Store, name: str) -> None:
        barrier.wait()
        until = T0 + timedelta(seconds=15)
        won[name] = RolloutTable(store).claim(seen, driver=name, now=T0, until=until) is not None

    threads = [threading.Thread(target=claim, args=pair) for pair in ((first, "a"), (second, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won.values()) == [False, True]
    winner = next(name for name, ok in won.items() if ok)
    loser = "b" if winner == "a" else "a"
    row = stored(first)
    assert row.driver == winner and row.version == seen.version + 1
    table = RolloutTable(second)
    assert not table.renew(SVC, driver=loser, until=T0 + timedelta(seconds=30))
    assert table.claim(row, driver=loser, now=T0, until=T0) is None  # a live lease


def rollout_updates(store: Store) -> list[str]:
    """Every UPDATE of the rollouts table ``store`` sends from now on."""
    sent: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE ROLLOUTS"):
            sent.append(" ".join(statement.split()))

    event.listen(store.engine, "before_cursor_execute", seen)
    return sent


async def test_a_waiting_rollout_is_written_only_when_it_shows_something_new(
    stores: tuple[Store, Store], clock: Clock
) -> None:
    first, _ = stores
    a = driver(first, "a")
    begin(first, min_requests=20)
    await a.tick_once()
    version = stored(first).version
    updates = rollout_updates(first)
    for _ in range(30):  # 30 ticks of 1 s with nothing new: the lease, every 5 s, only
        clock.advance(1)
        await a.tick_once()
    assert stored(first).version == version
    assert len(updates) == 6
    assert all(u.upper().startswith("UPDATE ROLLOUTS SET LEASE_UNTIL=") for u in updates)
    updates.clear()
    for _ in range(40):  # the step is over at 60 s: it waits for requests, and says so once
        clock.advance(1)
        await a.tick_once()
    row = stored(first)
    assert row.version == version + 1
    assert row.status.reason is not None and "waiting for 20 requests" in row.status.reason
    assert sum("status" in u.lower() for u in updates) == 1


# --------------------------------------------------------------------------- real servers


def driver_name(server: RunningServer) -> str:
    found = server.state.extra["rollout_driver"]
    assert isinstance(found, RolloutDriver)
    return found.name


def table(server: RunningServer) -> RolloutTable:
    found = server.state.extra["rollouts"]
    assert isinstance(found, RolloutTable)
    return found


def driven_by(server: RunningServer) -> str | None:
    found = table(server).get(SVC)
    return found.driver if found is not None else None


def test_two_servers_one_driver_any_stops_and_the_other_takes_over(
    fast_rollouts: None,
    monkeypatch: pytest.MonkeyPatch,
    sos_server: Callable[..., RunningServer],
    database_url: str,
) -> None:
    monkeypatch.setenv("SOS_ROLLOUT_LEASE", "1")
    first = sos_server(database_url=database_url, admin_token=TOKEN)
    with first.client() as client:
        deploy_canary_ready(client, SVC)
    second = sos_server(database_url=database_url, admin_token=TOKEN)
    servers = {driver_name(s): s for s in (first, second)}
    spec = Rollout(to="2", steps=[50, 100], step_seconds=3, min_requests=0)

    # the server that does not drive it stops it, and the driver leaves it stopped
    with first.client() as client:
        client.start_rollout(SVC, spec)
    until(lambda: driven_by(first) is not None, what="a driver")
    owner = servers[driven_by(first) or ""]
    other = second if owner is first else first
    with other.client() as client:
        assert client.stop_rollout(SVC).state == "stopped"
        time.sleep(0.5)
        assert client.get_rollout(SVC).state == "stopped"
        client.set_traffic(SVC, {1: 100})

    # while both run, one drives it all along
    with first.client() as client:
        client.start_rollout(SVC, spec)
    until(lambda: driven_by(first) is not None, what="a driver")
    owner_name = driven_by(first)
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        assert driven_by(first) == owner_name
        time.sleep(0.05)
    owner = servers[owner_name or ""]
    other = second if owner is first else first

    # the owner dies without letting its lease go: the other takes over once it ran out
    monkeypatch.setattr(table(owner), "release", lambda driver: None)
    owner.stop()
    held = table(other).get(SVC)
    assert held is not None and held.driver == owner_name and held.lease_until is not None
    until(lambda: driven_by(other) == driver_name(other), what="the take-over")
    taken = table(other).get(SVC)
    assert taken is not None and taken.status.step_started_at >= held.lease_until
    with other.client() as client:
        until(lambda: client.get_rollout(SVC).state != "running", what="the end")
        assert client.get_rollout(SVC).state == "succeeded"
        assert rules.shares(SVC, client.get_traffic(SVC)) == {f"{SVC}-00002": 100}
        with pytest.raises(ConflictError, match="no rollout running"):
            client.stop_rollout(SVC)


def test_a_waiting_server_rollout_is_written_when_its_figures_change(
    rollout_shop: RunningServer,
) -> None:
    store = rollout_shop.state.store
    backend = rollout_shop.state.backend
    assert isinstance(backend, FakeBackend)
    with rollout_shop.client() as client:
        client.start_rollout(SVC, Rollout(to="2", steps=[10, 100], step_seconds=600))
        until(lambda: client.get_rollout(SVC).last is not None, what="the first figures")
        time.sleep(0.5)  # the first figures are written
        before = table(rollout_shop).get(SVC)
        updates = rollout_updates(store)
        time.sleep(1)  # ten ticks, five samples of the metrics, nothing new
        after = table(rollout_shop).get(SVC)
        assert before is not None and after is not None
        assert updates == [] and after.version == before.version
        backend.serve(f"{SVC}-00002", 3)
        until(lambda: served(client) == 3, what="the new figures")
    assert sum("status" in u.lower() for u in updates) >= 1


def served(client: Client) -> int:
    last = client.get_rollout(SVC).last
    return last.requests if last is not None else 0
