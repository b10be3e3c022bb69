"""The API contract end to end: a real server on a free port, the real client, over HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from sos import (
    Artifact,
    Client,
    ConflictError,
    EnvVar,
    NotFoundError,
    NotReadyError,
    Resources,
    Revision,
    RevisionSpec,
    Route,
    Service,
    TrafficRoute,
    ValidationError,
)
from sos.runtime.base import LogLine
from sos.runtime.fake import FakeBackend

if TYPE_CHECKING:
    from sos_server import RunningServer

SVC = "sfix-service"


def revision(version: str = "v0.0.16", **extra: object) -> Revision:
    return Revision(artifact=Artifact(name="sfix_service", version=version), **extra)  # type: ignore[arg-type]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_issue_example_flow_works_end_to_end(
    sos_server: Callable[..., RunningServer], database_url: str
) -> None:
    server = sos_server(database_url=database_url)
    with server.client() as client:
        service = client.apply(Service(name=SVC, team="recs", description="similar items"))
        assert service.resource_version == 1
        old = client.create_revision(
            SVC,
            revision(
                env_vars=[EnvVar(id="env_var", value="env_value")],
                resources=Resources(memory="2G", cpu="1000m"),
            ),
        )
        assert old.id == f"{SVC}-00001"
        assert client.get_traffic(SVC).routes == [Route(revision=old.id, percent=100)]
        ready = client.wait_ready(SVC, old.id, timeout=10)
        assert ready.status.ready and ready.status.url

        new = client.create_revision(SVC, revision("v0.0.17"))
        assert new.id == f"{SVC}-00002"
        # a later revision gets no traffic until the user moves it
        assert [r.revision for r in client.get_traffic(SVC).routes] == [old.id]

        route = client.set_traffic(
            SVC,
            TrafficRoute(
                routes=[
                    Route(revision="2", percent=90),
                    Route(revision="00001", percent=10, tag="old"),
                ]
            ),
        )
        assert [(r.revision, r.percent, r.tag) for r in route.routes] == [
            (new.id, 90, None),
            (old.id, 10, "old"),
        ]
        back = client.rollback(SVC)
        assert back.routes == [Route(revision=old.id, percent=100)]
        forward = client.rollback(SVC)  # a rollback of a rollback goes forward again
        assert [r.revision for r in forward.routes] == [new.id, old.id]

        actions = [entry.action for entry in client.history(SVC)]
        assert actions == [
            "traffic.rollback",
            "traffic.rollback",
            "traffic.changed",
            "revision.created",
            "traffic.changed",
            "revision.created",
            "service.created",
        ]
        # the reconciler writes what the backend observes back into status
        wait_for(lambda: client.get_service(SVC).status.latest_ready_revision == new.id)
        status = client.get_service(SVC).status
        assert status.ready and status.url == f"http://{SVC}.sos.invalid"
        tagged = [t for t in status.traffic if t.tag == "old"]
        assert tagged and tagged[0].url == f"http://old-{SVC}.sos.invalid"


def test_revisions_are_immutable_and_listed_in_order(admin: Client) -> None:
    admin.apply(Service(name=SVC, team="recs"))
    first = admin.create_revision(SVC, revision(env_vars=[EnvVar(id="A", value="1")]))
    admin.create_revision(SVC, revision("v2"))
    assert [r.number for r in admin.list_revisions(SVC)] == [1, 2]
    assert admin.get_revision(SVC, 1) == admin.get_revision(SVC, first.id)
    # there is no endpoint that changes a revision
    response = httpx.put(
        f"{admin.url}/api/v1/services/{SVC}/revisions/1",
        json=revision("v3").spec().model_dump(mode="json"),
        headers={"Authorization": f"Bearer {admin.token}"},
    )
    assert response.status_code == 405
    assert "immutable" in response.json()["error"]["message"]
    assert admin.get_revision(SVC, 1).env_vars == [EnvVar(id="A", value="1")]


def test_a_revision_the_backend_cannot_run_is_refused_before_it_is_kept(
    sos_server: Callable[..., RunningServer],
) -> None:
    class NoFixedPorts(FakeBackend):
        def check_revision(self, spec: RevisionSpec) -> None:
            if spec.port is not None:
                raise ValidationError("no fixed ports here", details={"field": "port"})

    server = sos_server(backend=NoFixedPorts())
    with server.client() as admin:
        admin.apply(Service(name=SVC, team="recs"))
        with pytest.raises(ValidationError, match="no fixed ports here"):
            admin.create_revision(SVC, revision().model_copy(update={"port": 9000}))
        assert admin.list_revisions(SVC) == []
        assert admin.create_revision(SVC, revision()).number == 1


def test_status_says_which_change_it_reflects_and_clients_wait_for_it(admin: Client) -> None:
    admin.apply(Service(name=SVC, team="recs"))
    admin.create_revision(SVC, revision())
    admin.create_revision(SVC, revision("v2"))
    changed = admin.set_traffic(
        SVC,
        TrafficRoute(
            routes=[Route(revision="1", percent=90), Route(revision="2", percent=10, tag="beta")]
        ),
    )
    assert changed.resource_version is not None
    service = admin.wait_observed(SVC, changed.resource_version, timeout=30, interval=0.05)
    assert service.status.observed_generation == changed.resource_version
    # what status says is about this change: the new tag is there, with its URL
    (beta,) = [t for t in service.status.traffic if t.tag == "beta"]
    assert beta.url and beta.percent == 10
    assert admin.get_revision(SVC, 2).status.observed_generation == changed.resource_version
    with pytest.raises(NotReadyError, match="has not caught up"):
        admin.wait_observed(SVC, changed.resource_version + 50, timeout=0.3, interval=0.05)


def test_apply_updates_and_bumps_resource_version_only_on_change(admin: Client) -> None:
    created = admin.apply(Service(name=SVC, team="recs"))
    same = admin.apply(Service(name=SVC, team="recs"))
    assert same.resource_version == created.resource_version
    changed = admin.apply(Service(name=SVC, team="recs", description="now described"))
    assert changed.resource_version == (created.resource_version or 0) + 1
    assert admin.get_service(SVC).description == "now described"


def test_resource_version_zero_creates_only_and_never_overwrites(admin: Client) -> None:
    created = admin.apply(Service(name=SVC, team="recs", description="first", resource_version=0))
    assert created.description == "first"
    with pytest.raises(ConflictError, match=f"service '{SVC}' already exists; pick another"):
        admin.apply(Service(name=SVC, team="recs", description="second", resource_version=0))
    assert admin.get_service(SVC).description == "first"
    assert [e.action for e in admin.history(SVC)].count("service.updated") == 0


def test_stale_resource_version_is_a_conflict_and_changes_nothing(admin: Client) -> None:
    read = admin.apply(Service(name=SVC, team="recs"))
    admin.apply(Service(name=SVC, team="recs", description="someone else"))
    with pytest.raises(ConflictError, match="someone else changed service"):
        admin.apply(read.model_copy(update={"description": "mine"}))
    assert admin.get_service(SVC).description == "someone else"

    admin.create_revision(SVC, revision())
    admin.create_revision(SVC, revision("v2"))
    traffic = admin.get_traffic(SVC)
    admin.set_traffic(SVC, {2: 100})
    stale = TrafficRoute(
        routes=[Route(revision="1", percent=100)], resource_version=traffic.resource_version
    )
    with pytest.raises(ConflictError):
        admin.set_traffic(SVC, stale)
    assert [r.revision for r in admin.get_traffic(SVC).routes] == [f"{SVC}-00002"]


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({7: 100}, "has no revision sfix-service-00007"),
        ({"other-00001": 100}, "belongs to service 'other'"),
    ],
)
def test_traffic_to_unknown_revisions_is_rejected(
    admin: Client, routes: dict[str | int, int], message: str
) -> None:
    admin.apply(Service(name=SVC, team="recs"))
    admin.create_revision(SVC, revision())
    with pytest.raises(ValidationError, match=message):
        admin.set_traffic(SVC, routes)


def test_traffic_to_a_failed_revision_is_refused_unless_forced(
    server: RunningServer, admin: Client
) -> None:
    backend = server.state.backend
    assert isinstance(backend, FakeBackend)
    admin.apply(Service(name=SVC, team="recs"))
    good = admin.create_revision(SVC, revision())
    bad = admin.create_revision(SVC, revision("v2"))
    # a revision that was just created (not ready yet) may get traffic at once
    admin.set_traffic(SVC, {2: 10, 1: 90})
    backend.fail(
        bad.id,
        "CrashLoop",
        "the instance exited with code 1 before ready, 5 starts in a row; last log lines:\n"
        "[2026-01-01] [123] Booting worker with pid: 123",
    )
    wait_for(lambda: admin.get_revision(SVC, 2).status.failed)

    with pytest.raises(ConflictError) as refused:
        admin.set_traffic(SVC, {2: 100})
    message = refused.value.message
    assert f"revision {bad.id} failed" in message
    assert "CrashLoop: the instance exited with code 1 before ready" in message
    assert f"`sos logs {SVC} --revision 2`" in message and "--force" in message
    assert "Booting worker" not in message
    assert refused.value.details["revision"] == bad.id
    assert [r.revision for r in admin.get_traffic(SVC).routes] == [bad.id, good.id]

    # less traffic for the failed revision, or none, is always allowed
    admin.set_traffic(SVC, {2: 5, 1: 95})
    assert admin.set_traffic(SVC, {1: 100}).routes == [Route(revision=good.id, percent=100)]
    # a tag without a share reaches it for debugging
    admin.set_traffic(
        SVC,
        TrafficRoute(
            routes=[Route(revision="1", percent=100), Route(revision="2", percent=0, tag="x")]
        ),
    )
    # force moves it anyway; rollback is the emergency path and is not checked
    forced = admin.set_traffic(SVC, {2: 100}, force=True)
    assert forced.routes == [Route(revision=bad.id, percent=100)]
    admin.set_traffic(SVC, {1: 100})
    assert admin.rollback(SVC).routes == [Route(revision=bad.id, percent=100)]


def test_bad_json_bodies_get_422_naming_the_field(server: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    bad = httpx.put(
        f"{server.url}/api/v1/services/{SVC}",
        json={"name": SVC, "team": "Recs!"},
        headers=headers,
    )
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["type"] == "validation_error"
    assert error["message"].startswith("team: team name 'Recs!' must be a DNS-1035 label")

    httpx.put(
        f"{server.url}/api/v1/services/{SVC}", json={"name": SVC, "team": "recs"}, headers=headers
    )
    bad_rev = httpx.post(
        f"{server.url}/api/v1/services/{SVC}/revisions",
        json={"artifact": {"name": "a", "version": "1"}, "resources": {"memory": "2 GB"}},
        headers=headers,
    )
    assert bad_rev.status_code == 422
    assert "resources.memory" in bad_rev.json()["error"]["message"]
    bad_split = httpx.put(
        f"{server.url}/api/v1/services/{SVC}/traffic",
        json={"routes": [{"revision": "1", "percent": 60}, {"revision": "2", "percent": 30}]},
        headers=headers,
    )
    assert bad_split.status_code == 422
    assert "sum to 100, these sum to 90" in bad_split.json()["error"]["message"]
    not_json = httpx.put(
        f"{server.url}/api/v1/services/{SVC}",
        content=b"{not json",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert not_json.status_code == 422
    assert not_json.json()["error"]["type"] == "validation_error"


def test_unknown_things_are_404_in_the_error_shape(admin: Client, server: RunningServer) -> None:
    with pytest.raises(NotFoundError, match="service 'nope' does not exist"):
        admin.get_service("nope")
    admin.apply(Service(name=SVC, team="recs"))
    with pytest.raises(NotFoundError, match="has no revision"):
        admin.get_revision(SVC, 9)
    response = httpx.get(f"{server.url}/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_rollback_without_an_earlier_route_says_what_to_do(admin: Client) -> None:
    admin.apply(Service(name=SVC, team="recs"))
    admin.create_revision(SVC, revision())
    with pytest.raises(ConflictError, match="no earlier traffic route"):
        admin.rollback(SVC)


def test_delete_service_removes_it_from_backend_and_keeps_history(
    sos_server: Callable[..., RunningServer],
) -> None:
    backend = FakeBackend()
    server = sos_server(backend=backend)
    with server.client() as client:
        client.apply(Service(name=SVC, team="recs"))
        client.create_revision(SVC, revision())
        wait_for(lambda: SVC in backend.applied)
        client.delete_service(SVC)
        wait_for(lambda: SVC not in backend.applied)
        assert client.list_services() == []
        assert client.history(SVC)[0].action == "service.deleted"
        with pytest.raises(NotFoundError):
            client.list_revisions(SVC)


def test_desired_state_has_service_revisions_and_traffic(admin: Client) -> None:
    admin.apply(Service(name=SVC, team="recs"))
    rev = admin.create_revision(SVC, revision())
    desired = admin.desired(SVC)
    assert desired.service.name == SVC
    assert [r.id for r in desired.revisions] == [rev.id]
    assert desired.routable() == {rev.id}


class LoggingBackend(FakeBackend):
    async def logs(
        self, service: str, revision: str | None = None, *, tail: int = 100, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        for n in range(3):
            rev = revision or f"{service}-00001"
            yield LogLine(datetime.now(UTC), service, rev, "i1", "stdout", f"line {n}")


def test_logs_stream_from_the_backend_as_ndjson_and_sse(
    sos_server: Callable[..., RunningServer],
) -> None:
    server = sos_server(backend=LoggingBackend())
    with server.client() as client:
        client.apply(Service(name=SVC, team="recs"))
        client.create_revision(SVC, revision())
        lines = list(client.logs(SVC, revision=1))
        assert [line.text for line in lines] == ["line 0", "line 1", "line 2"]
        assert {line.revision for line in lines} == {f"{SVC}-00001"}
        with pytest.raises(NotFoundError):
            list(client.logs("nope"))
    sse = httpx.get(
        f"{server.url}/api/v1/services/{SVC}/logs",
        headers={"Authorization": f"Bearer {server.admin_token}", "Accept": "text/event-stream"},
    )
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert sse.text.count("data: {") == 3


def test_openapi_is_published_with_the_shared_models(server: RunningServer) -> None:
    schema = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    assert {"ServiceSpec", "RevisionSpec", "TrafficRoute", "Service", "Revision"} <= set(
        schema["components"]["schemas"]
    )
    put = schema["paths"]["/api/v1/services/{name}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ServiceSpec"
    )
    assert httpx.get(f"{server.url}/api/v1/docs").status_code == 200


def test_a_service_says_when_its_latest_revision_was_made_not_its_last_change(
    server: RunningServer, admin: Client
) -> None:
    admin.apply(Service(name="shop", team="recs"))
    assert admin.get_service("shop").latest_revision_at is None
    made = admin.create_revision("shop", Revision(artifact=Artifact(name="a", version="1")))
    store = server.state.store
    real = store.clock
    store.clock = lambda: real() + timedelta(hours=3)  # a traffic change three hours later
    try:
        admin.set_traffic("shop", {1: 100})
    finally:
        store.clock = real
    service = admin.get_service("shop")
    assert service.latest_revision_at == made.created_at
    assert service.updated_at is not None and service.updated_at > made.created_at
    (listed,) = admin.list_services()
    assert listed.latest_revision_at == made.created_at
