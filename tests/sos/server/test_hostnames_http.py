"""Hostnames belong to their service's team: a service may not be named like another
service's tag address ({tag}-{service}), and a tag may not give a service the address of an
existing one, whichever comes first, over real HTTP, with the conflict named."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from sos import Artifact, ConflictError, Revision, Service

if TYPE_CHECKING:
    from sos_server import RunningServer

REV = Revision(artifact=Artifact(name="a", version="1"))


def test_a_service_named_like_another_teams_tag_address_is_refused(
    server: RunningServer,
) -> None:
    with server.client(server.token("b-writer", team="team-b")) as victim:
        victim.apply(Service(name="victim", team="team-b"))
        victim.create_revision("victim", REV)
        victim.create_revision("victim", REV)
        victim.set_traffic("victim", {1: 100})
        route = victim.get_traffic("victim").model_dump()
        route["routes"].append({"revision": "victim-00002", "percent": 0, "tag": "canary"})
        victim.set_traffic("victim", type(victim.get_traffic("victim")).model_validate(route))
    with server.client(server.token("a-writer", team="team-a")) as attacker:
        with pytest.raises(ConflictError, match=r"address of tag 'canary' of service 'victim'"):
            attacker.apply(Service(name="canary-victim", team="team-a"))
        assert "canary-victim" not in [s.name for s in attacker.list_services()]
        attacker.apply(Service(name="stable-victim", team="team-a"))  # no such tag


def test_a_tag_naming_an_existing_service_is_refused(server: RunningServer) -> None:
    with server.client() as admin:
        admin.apply(Service(name="canary-shop", team="team-a"))
        admin.apply(Service(name="shop", team="team-b"))
        admin.create_revision("shop", REV)
        admin.set_traffic("shop", {1: 100})
        route = admin.get_traffic("shop").model_dump()
        route["routes"][0]["tag"] = "canary"
        with pytest.raises(ConflictError, match=r"tag 'canary' would give service 'shop'"):
            admin.set_traffic("shop", type(admin.get_traffic("shop")).model_validate(route))
        assert all(r.tag is None for r in admin.get_traffic("shop").routes)  # unchanged


@pytest.mark.parametrize("count", [101, 30_000])
def test_a_reader_sending_thousands_of_tags_is_refused_without_the_work(
    server: RunningServer, count: int
) -> None:
    with server.client() as admin:
        admin.apply(Service(name="shop", team="team-a"))
        admin.create_revision("shop", REV)
    reader = server.token("dashboards", role="reader")
    routes = [{"revision": "shop-00001", "percent": 0, "tag": f"t{i}"} for i in range(count)]
    routes[0]["percent"] = 100
    answer = httpx.put(
        f"{server.url}/api/v1/services/shop/traffic",
        json={"routes": routes},
        headers={"Authorization": f"Bearer {reader}"},
        timeout=60,
    )
    # 30k tags are over the body cap (413, never parsed); 101 parse and fail the bound (422)
    assert answer.status_code == (413 if count > 1000 else 422), answer.text[:300]
    if count <= 1000:
        assert "at most 100" in answer.text
    with server.client() as admin:  # nothing changed, and the API answers at once
        assert [r.tag for r in admin.get_traffic("shop").routes] == [None]


def test_a_tag_with_the_address_of_another_services_tag_is_refused(
    server: RunningServer,
) -> None:
    with server.client(server.token("b-writer", team="team-b")) as victim:
        victim.apply(Service(name="shop-api", team="team-b"))
        victim.create_revision("shop-api", REV)
        route = victim.get_traffic("shop-api").model_dump()
        route["routes"][0]["tag"] = "v2"  # address v2-shop-api
        victim.set_traffic("shop-api", type(victim.get_traffic("shop-api")).model_validate(route))
    with server.client(server.token("a-writer", team="team-a")) as attacker:
        attacker.apply(Service(name="api", team="team-a"))
        attacker.create_revision("api", REV)
        route = attacker.get_traffic("api").model_dump()
        route["routes"][0]["tag"] = "v2-shop"  # also v2-shop-api
        with pytest.raises(ConflictError, match=r"address of tag 'v2' of service 'shop-api'"):
            attacker.set_traffic("api", type(attacker.get_traffic("api")).model_validate(route))
        assert [r.tag for r in attacker.get_traffic("api").routes] == [None]
