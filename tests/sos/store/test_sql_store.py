"""The SQL store on SQLite and PostgreSQL: migrations, compare-and-swap, history, tokens."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from sos.errors import ConflictError, NotFoundError, ServerUnavailableError, ValidationError
from sos.models import (
    Artifact,
    RevisionSpec,
    RevisionStatus,
    Route,
    ServiceSpec,
    ServiceStatus,
    TokenSpec,
    TrafficRoute,
)
from sos.store import StaleWriteError, Store
from sos.store.migrate import current_revision, head_revision

SVC = "sfix-service"
SPEC = RevisionSpec(artifact=Artifact(name="a", version="1"))


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(database_url: str) -> Store:
    store = Store(database_url, clock=FakeClock())
    store.migrate()
    return store


def route(*pairs: tuple[int, int]) -> TrafficRoute:
    return TrafficRoute(routes=[Route(revision=f"{SVC}-{n:05d}", percent=p) for n, p in pairs])


def test_migrations_create_every_table_and_are_idempotent(store: Store) -> None:
    store.migrate()  # a second start changes nothing
    assert current_revision(store.engine) == head_revision()
    tables = set(inspect(store.engine).get_table_names())
    assert {"services", "revisions", "history", "tokens", "alembic_version"} <= tables


def test_writes_are_compare_and_swap_on_resource_version(store: Store) -> None:
    store.create_service(ServiceSpec(name=SVC, team="recs"), actor="t")
    service, changed = store.update_service(
        ServiceSpec(name=SVC, team="recs", description="x"), expected_version=1, actor="t"
    )
    assert changed and service.resource_version == 2
    with pytest.raises(StaleWriteError, match="resource_version 2"):
        store.update_service(
            ServiceSpec(name=SVC, team="recs", description="y"), expected_version=1, actor="t"
        )
    assert store.get_service(SVC).description == "x"


def test_two_stores_on_one_database_never_both_win(database_url: str) -> None:
    """Two engines behave like two server processes sharing the database."""
    first, second = Store(database_url), Store(database_url)
    first.migrate()
    first.create_service(ServiceSpec(name=SVC, team="recs"), actor="t")
    first.create_revision(SVC, SPEC, expected_version=1, actor="t")
    first.create_revision(SVC, SPEC, expected_version=2, actor="t")
    barrier = threading.Barrier(2)
    results: list[str] = []

    def write(store: Store, target: int) -> None:
        barrier.wait()
        try:
            store.set_traffic(SVC, route((target, 100)), expected_version=3, actor="t")
            results.append("ok")
        except ConflictError:
            results.append("conflict")

    threads = [threading.Thread(target=write, args=(s, n)) for s, n in ((first, 1), (second, 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["conflict", "ok"]
    assert second.get_service(SVC).resource_version == 4


def test_first_revision_gets_all_traffic_later_ones_none(store: Store) -> None:
    store.create_service(ServiceSpec(name=SVC, team="recs"), actor="alice")
    first = store.create_revision(SVC, SPEC, expected_version=1, actor="alice")
    second = store.create_revision(SVC, SPEC, expected_version=2, actor="alice")
    assert (first.id, second.id) == (f"{SVC}-00001", f"{SVC}-00002")
    service = store.get_service(SVC)
    assert service.traffic == route((1, 100)).model_copy(update={"resource_version": 3})
    assert service.latest_revision == second.id
    history = store.history(SVC)
    assert [h.action for h in history] == [
        "revision.created",
        "traffic.changed",
        "revision.created",
        "service.created",
    ]
    assert history[1].summary == "traffic 00001=100 (the first revision gets all traffic)"
    assert all(h.actor == "alice" for h in history)
    assert history[0].at > history[-1].at


def test_rollback_swaps_routes_atomically_and_twice_goes_forward(store: Store) -> None:
    store.create_service(ServiceSpec(name=SVC, team="recs"), actor="t")
    store.create_revision(SVC, SPEC, expected_version=1, actor="t")
    store.create_revision(SVC, SPEC, expected_version=2, actor="t")
    store.set_traffic(SVC, route((2, 90), (1, 10)), expected_version=3, actor="t")
    back = store.rollback(SVC, expected_version=4, actor="t")
    assert back.traffic is not None and back.traffic.routes == route((1, 100)).routes
    forward = store.rollback(SVC, expected_version=5, actor="t")
    assert forward.traffic is not None and forward.traffic.routes == route((2, 90), (1, 10)).routes
    with pytest.raises(StaleWriteError):
        store.rollback(SVC, expected_version=5, actor="t")


def test_status_writes_do_not_bump_resource_version(store: Store) -> None:
    store.create_service(ServiceSpec(name=SVC, team="recs"), actor="t")
    rev = store.create_revision(SVC, SPEC, expected_version=1, actor="t")
    assert rev.id is not None
    assert store.write_status(
        SVC, ServiceStatus(ready=True, reason="Ready"), {rev.id: RevisionStatus(ready=True)}
    )
    service = store.get_service(SVC)
    assert service.status.ready and service.resource_version == 2
    assert store.get_revision(SVC, rev.id).status.ready
    assert not store.write_status("gone", ServiceStatus(), {})


def test_delete_removes_revisions_but_keeps_history(store: Store) -> None:
    store.create_service(ServiceSpec(name=SVC, team="recs"), actor="t")
    store.create_revision(SVC, SPEC, expected_version=1, actor="t")
    store.delete_service(SVC, expected_version=2, actor="t")
    with pytest.raises(NotFoundError):
        store.get_service(SVC)
    assert store.desired(SVC) is None
    assert store.history(SVC)[0].action == "service.deleted"
    # the name can be used again, and revision numbers start over
    store.create_service(ServiceSpec(name=SVC, team="ads"), actor="t")
    assert store.create_revision(SVC, SPEC, expected_version=1, actor="t").number == 1


def test_existing_service_name_is_a_conflict(store: Store) -> None:
    store.create_service(ServiceSpec(name=SVC, team="recs"), actor="t")
    with pytest.raises(ConflictError, match="already exists"):
        store.create_service(ServiceSpec(name=SVC, team="ads"), actor="t")


def test_history_pages_back_with_before(store: Store) -> None:
    store.create_service(ServiceSpec(name=SVC, team="recs"), actor="t")
    for version in range(1, 6):
        store.create_revision(SVC, SPEC, expected_version=version, actor="t")
    page = store.history(SVC, limit=3)
    older = store.history(SVC, limit=3, before=page[-1].id)
    assert [h.id for h in page + older] == sorted({h.id for h in page + older}, reverse=True)
    assert len(store.history(SVC, limit=100)) == 7
    with pytest.raises(NotFoundError):
        store.history("never-existed")


def test_tokens_are_found_by_secret_and_revoked_by_name(store: Store) -> None:
    admin = store.create_token(TokenSpec(name="admin", role="admin"), actor=None)
    writer = store.create_token(TokenSpec(name="ci", team="recs"), actor="admin")
    assert writer.secret.startswith("sos_") and len(writer.secret) > 40
    found = store.token_for_secret(writer.secret)
    assert found is not None and (found.name, found.team) == ("ci", "recs")
    assert store.token_for_secret("nope") is None
    with pytest.raises(ConflictError, match="already exists"):
        store.create_token(TokenSpec(name="ci", team="ads"), actor="admin")
    store.delete_token("ci")
    assert store.token_for_secret(writer.secret) is None
    with pytest.raises(ValidationError, match="last admin"):
        store.delete_token(admin.id)


def test_bad_database_urls_are_clear_errors_that_hide_the_password() -> None:
    with pytest.raises(ValidationError, match=r"write it like sqlite:////path/sos\.db"):
        Store("nonsense")
    down = Store("postgresql://bob:secret@127.0.0.1:1/sos")
    with pytest.raises(ServerUnavailableError, match=r"bob:\*\*\*@127.0.0.1:1") as info:
        down.migrate()
    assert "secret" not in info.value.message
