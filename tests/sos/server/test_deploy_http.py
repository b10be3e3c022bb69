"""``POST /services/{name}/deploy``: a whole deploy in one transaction, over real HTTP, on
SQLite and PostgreSQL (the store's nested writes are savepoints of one transaction)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from sos import (
    Artifact,
    ConflictError,
    NotFoundError,
    Revision,
    Route,
    Service,
    TrafficRoute,
    ValidationError,
)

if TYPE_CHECKING:
    from sos_server import RunningServer

SVC = "shop"


def revision(version: str = "v1") -> Revision:
    return Revision(artifact=Artifact(name="shop_app", version=version))


def split(*routes: tuple[str, int, str | None]) -> TrafficRoute:
    return TrafficRoute(routes=[Route(revision=r, percent=p, tag=t) for r, p, t in routes])


def test_a_deploy_is_one_change_and_says_what_it_did(
    sos_server: Callable[..., RunningServer], database_url: str
) -> None:
    server = sos_server(database_url=database_url)
    with server.client() as client:
        first = client.deploy(Service(name=SVC, team="recs", description="Shop"), revision())
        assert first.created and first.revision is not None
        assert first.revision.id == f"{SVC}-00001"
        assert first.steps == [
            f"create service {SVC} for team recs",
            "create revision 00001 from artifact shop_app v1",
            "give revision 00001 all traffic (the first revision)",
        ]
        # the same spec again: no revision; a service that sets no description keeps it
        again = client.deploy(Service(name=SVC, team="recs"), revision())
        assert not again.created and again.revision is not None
        assert again.revision.id == first.revision.id
        assert again.service.description == "Shop"
        assert again.steps[1] == "create no revision: 00001 already has this spec"
        # a canary in one call: "latest" is the revision this deploy creates
        canary = client.deploy(
            Service(name=SVC, team="recs"),
            revision("v2"),
            split(("latest", 10, "canary"), ("1", 90, None)),
        )
        assert canary.created and canary.revision is not None
        assert canary.revision.id == f"{SVC}-00002"
        traffic = client.get_traffic(SVC)
        assert [(r.revision, r.percent, r.tag) for r in traffic.routes] == [
            (f"{SVC}-00002", 10, "canary"),
            (f"{SVC}-00001", 90, None),
        ]
        # the route it replaced is what a rollback returns to
        back = client.rollback(SVC)
        assert [(r.revision, r.percent) for r in back.routes] == [(f"{SVC}-00001", 100)]
        actions = [entry.action for entry in client.history(SVC)]
    assert actions.count("revision.created") == 2
    assert actions.count("traffic.changed") == 2  # the first revision's, the canary's


def test_a_refused_part_leaves_nothing_behind(
    sos_server: Callable[..., RunningServer], database_url: str
) -> None:
    server = sos_server(database_url=database_url)
    with server.client() as client:
        client.deploy(Service(name="canary-shop", team="other"), revision())
        # service, revision, then a traffic tag whose address (canary-shop) is another
        # service: refused at the last part, so the service and revision never existed
        with pytest.raises(ConflictError, match=r"^traffic: tag 'canary' would give"):
            client.deploy(
                Service(name="shop", team="recs"),
                revision(),
                split(("latest", 100, "canary")),
            )
        with pytest.raises(NotFoundError):
            client.get_service("shop")
        # a revision of an existing service, then traffic to a revision that is not there
        client.deploy(Service(name=SVC, team="recs"), revision())
        with pytest.raises(ValidationError, match=r"^traffic: service 'shop' has no revision"):
            client.deploy(
                Service(name=SVC, team="recs", description="changed"),
                revision("v2"),
                split(("latest", 50, None), ("7", 50, None)),
            )
        service = client.get_service(SVC)
        assert service.description == ""
        assert service.latest_revision == f"{SVC}-00001"
        assert [r.id for r in client.list_revisions(SVC)] == [f"{SVC}-00001"]


def test_a_dry_run_checks_every_part_and_changes_nothing(
    sos_server: Callable[..., RunningServer],
) -> None:
    server = sos_server()
    with server.client() as client:
        plan = client.deploy(
            Service(name=SVC, team="recs"),
            revision(),
            split(("latest", 100, "now")),
            dry_run=True,
        )
        assert plan.dry_run and plan.created
        assert plan.steps[-1].startswith("set traffic 00001=100@now")
        with pytest.raises(NotFoundError):
            client.get_service(SVC)
        # what the real deploy would refuse, the dry run refuses too
        with pytest.raises(ValidationError, match=r"^traffic: routes\[0\]\.revision"):
            client.deploy(
                Service(name=SVC, team="recs"), None, split(("latest", 100, None)), dry_run=True
            )
        body = {
            "service": {"name": SVC, "team": "recs"},
            "revision": revision().spec().model_dump(mode="json"),
        }
        url = f"{server.url}/api/v1/services/{SVC}/deploy"
        auth = {"Authorization": f"Bearer {server.admin_token}"}
        response = httpx.post(url, headers=auth, json={**body, "dry_run": True})
        assert response.status_code == 200, response.text
        real = httpx.post(url, headers=auth, json=body)
        assert real.status_code == 201, real.text
        assert [r.id for r in client.list_revisions(SVC)] == [f"{SVC}-00001"]


def test_settings_a_deploy_cannot_honour_are_refused(
    sos_server: Callable[..., RunningServer],
) -> None:
    server = sos_server()
    with server.client() as client:
        client.deploy(Service(name=SVC, team="recs"), revision())
        stale = split(("1", 100, None)).model_copy(update={"resource_version": 1})
        with pytest.raises(ValidationError, match=r"conditional on service\.resource_version"):
            client.deploy(Service(name=SVC, team="recs"), None, stale)
        with pytest.raises(ValidationError, match="needs change_team"):
            client.deploy(Service(name=SVC, team="ads"), revision())
        moved = client.deploy(Service(name=SVC, team="ads"), None, change_team=True)
        assert moved.service.team == "ads" and moved.revision is None


def test_a_traffic_dry_run_answers_like_the_change_and_changes_nothing(
    sos_server: Callable[..., RunningServer],
) -> None:
    server = sos_server()
    with server.client() as client:
        client.deploy(Service(name=SVC, team="recs"), revision())
        client.deploy(Service(name=SVC, team="recs"), revision("v2"))
        client.deploy(Service(name="canary-shop", team="other"), revision())
        planned = client.set_traffic(SVC, split(("2", 10, "new"), ("1", 90, None)), dry_run=True)
        assert [(r.revision, r.percent) for r in planned.routes] == [
            (f"{SVC}-00002", 10),
            (f"{SVC}-00001", 90),
        ]
        with pytest.raises(ConflictError, match="tag 'canary' would give"):
            client.set_traffic(SVC, split(("2", 100, "canary")), dry_run=True)
        with pytest.raises(ValidationError, match="two untagged routes"):
            client.set_traffic(SVC, split(("2", 50, None), ("2", 50, None)), dry_run=True)
        assert [(r.revision, r.percent) for r in client.get_traffic(SVC).routes] == [
            (f"{SVC}-00001", 100)
        ]
        assert [e.action for e in client.history(SVC)].count("traffic.changed") == 1
