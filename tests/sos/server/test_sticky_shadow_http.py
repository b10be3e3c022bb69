"""Sticky splits and shadows in the control plane, over HTTP: stored, said in the history,
checked against the service's revisions, kept by rollouts, and refused by a backend that
cannot honour them (Knative) instead of being accepted and ignored."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from sos import Artifact, Revision, Route, Service, TrafficRoute, ValidationError, traffic
from sos.models import Shadow
from sos.runtime.knative.backend import KnativeBackend

if TYPE_CHECKING:
    from sos_server import RunningServer

SVC = "shop"


@pytest.fixture
def shop(sos_server: Callable[..., RunningServer]) -> RunningServer:
    server = sos_server()
    with server.client() as client:
        for version in ("v1", "v2", "v3"):
            client.deploy(
                Service(name=SVC, team="recs"),
                Revision(artifact=Artifact(name="shop_app", version=version)),
            )
    return server


def sticky(split_by: str | None = "header:X-User-Id", **extra: object) -> TrafficRoute:
    return TrafficRoute(
        routes=[Route(revision="1", percent=90), Route(revision="2", percent=10)],
        split_by=split_by,
        **extra,  # type: ignore[arg-type]
    )


def test_a_sticky_split_with_a_shadow_is_kept_and_said(shop: RunningServer) -> None:
    with shop.client() as client:
        client.set_traffic(SVC, sticky(shadow=[Shadow(revision="3", percent=50)]))
        route = client.get_traffic(SVC)
        assert route.split_by == "header:X-User-Id"
        assert [(m.revision, m.percent) for m in route.shadow] == [(f"{SVC}-00003", 50)]
        summary = client.history(SVC, limit=1)[0].summary
        assert summary.startswith("traffic 00001=90 00002=10 by header:X-User-Id shadow 00003=50%")
        # a rollback returns to the per-request split without a shadow, and forward again
        back = client.rollback(SVC)
        assert back.split_by is None and back.shadow == []
        forward = client.rollback(SVC)
        assert forward.split_by == "header:X-User-Id" and len(forward.shadow) == 1


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (sticky(shadow=[Shadow(revision="2", percent=50)]), "serves traffic already"),
        (sticky(shadow=[Shadow(revision="7", percent=50)]), "has no revision shop-00007"),
        (
            sticky(shadow=[Shadow(revision="3", percent=5), Shadow(revision="3", percent=9)]),
            "is shadowed twice",
        ),
    ],
)
def test_shadows_the_service_cannot_have_are_refused(
    shop: RunningServer, route: TrafficRoute, message: str
) -> None:
    with shop.client() as client:
        with pytest.raises(ValidationError, match=message):
            client.set_traffic(SVC, route)
        assert client.get_traffic(SVC).shadow == []


def test_bad_keys_and_paths_are_refused_by_the_model() -> None:
    with pytest.raises(ValueError, match="must be header:NAME, query:NAME or cookie:NAME"):
        sticky("ip")
    with pytest.raises(ValueError, match="items_path"):
        Shadow(revision="3", percent=10, items_path="items/0")


def test_a_rollout_keeps_the_key_and_the_shadow() -> None:
    base = TrafficRoute(
        routes=[Route(revision=f"{SVC}-00001", percent=100)],
        split_by="query:user_id",
        shadow=[Shadow(revision=f"{SVC}-00003", percent=20)],
    )
    step = traffic.with_share(SVC, base, f"{SVC}-00002", 10)
    assert step.split_by == "query:user_id" and step.shadow == base.shadow
    assert traffic.describe(step) == "00002=10 00001=90 by query:user_id shadow 00003=20%"


def test_knative_refuses_what_it_cannot_route() -> None:
    backend = object.__new__(KnativeBackend)
    with pytest.raises(ValidationError, match="knative/serving#8160"):
        backend.check_traffic(sticky())
    with pytest.raises(ValidationError, match="cannot mirror requests"):
        backend.check_traffic(sticky(None, shadow=[Shadow(revision="3", percent=5)]))
    backend.check_traffic(sticky(None))  # a plain split is fine


def test_the_shadow_report_says_when_a_backend_does_not_mirror(shop: RunningServer) -> None:
    with shop.client() as client:
        report = client.shadow_report(SVC)
    assert not report.available and report.message == "the fake backend does not mirror requests"


def test_sticky_buckets_hold_the_split_and_move_only_what_must_move() -> None:
    keys = [f"user-{i}" for i in range(10_000)]
    one, two = f"{SVC}-00001", f"{SVC}-00002"
    before = traffic.sticky_ranges({two: 30, one: 70})
    assert [r[0] for r in before] == [one, two]  # the older revision first, whatever the order
    assigned = {k: traffic.sticky_revision(before, k) for k in keys}
    share = sum(rev == two for rev in assigned.values()) / len(keys)
    assert abs(share - 0.30) < 0.02
    after = traffic.sticky_ranges({one: 60, two: 40})
    moved = sum(traffic.sticky_revision(after, k) != assigned[k] for k in keys) / len(keys)
    assert abs(moved - 0.10) < 0.02  # only the keys that must move
    assert all(traffic.sticky_revision(before, k) == assigned[k] for k in keys[:100])  # stable
