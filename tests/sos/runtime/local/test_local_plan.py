"""The local backend's plan as a table: given desired and current, want these actions."""

from __future__ import annotations

from pathlib import Path

import pytest
from sos_runtime import make_desired

from sos.runtime.base import DesiredService
from sos.runtime.local.ingress import ServiceRoute
from sos.runtime.local.plan import (
    Action,
    Current,
    Deploy,
    Fail,
    Retire,
    Scale,
    SetRoute,
    plan,
    route_of,
)


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "app.pyz"
    path.write_bytes(b"not really a zipapp; the plan never opens it")
    return path


def shop(
    artifact: Path, traffic: dict[int, int] | None, *numbers: int, **tags: int
) -> DesiredService:
    spec = {"autoscaling": {"initial_scale": 2}}
    return make_desired(
        "shop",
        [(n, artifact, spec) for n in numbers],
        traffic,
        tags={n: tag for tag, n in tags.items()},
    )


def route(split: dict[str, int], **tags: str) -> ServiceRoute:
    return ServiceRoute("shop", tuple(split.items()), tags)


CASES: list[tuple[str, dict[int, int] | None, tuple[int, ...], Current, list[Action]]] = [
    (
        "a new revision is deployed with its initial scale and gets the route",
        {1: 100},
        (1,),
        Current(),
        [Deploy("shop-00001", 2), SetRoute(route({"shop-00001": 100}))],
    ),
    (
        "nothing to do when everything is in place",
        {1: 100},
        (1,),
        Current(
            wanted={"shop-00001": 2},
            route=route({"shop-00001": 100}),
            autoscaler={"shop-00001": 2},
        ),
        [],
    ),
    (
        "the autoscaler's want becomes a scale action",
        {1: 100},
        (1,),
        Current(
            wanted={"shop-00001": 2},
            route=route({"shop-00001": 100}),
            autoscaler={"shop-00001": 5},
        ),
        [Scale("shop-00001", 5)],
    ),
    (
        "a traffic change only changes the route",
        {1: 30, 2: 70},
        (1, 2),
        Current(
            wanted={"shop-00001": 1, "shop-00002": 1},
            route=route({"shop-00001": 100, "shop-00002": 0}),
        ),
        [SetRoute(route({"shop-00001": 30, "shop-00002": 70}))],
    ),
    (
        "a revision gone from the store is retired",
        {2: 100},
        (2,),
        Current(wanted={"shop-00001": 1, "shop-00002": 1}, route=route({"shop-00002": 100})),
        [Retire("shop-00001")],
    ),
    (
        "a service without traffic has no route",
        None,
        (1,),
        Current(wanted={"shop-00001": 1}, route=route({"shop-00001": 100})),
        [SetRoute(None)],
    ),
    (
        "a revision already failed is not planned again",
        {1: 100},
        (1,),
        Current(route=route({"shop-00001": 100}), failed=frozenset({"shop-00001"})),
        [],
    ),
]


@pytest.mark.parametrize(
    ("traffic", "numbers", "current", "want"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_plan(
    artifact: Path,
    traffic: dict[int, int] | None,
    numbers: tuple[int, ...],
    current: Current,
    want: list[Action],
) -> None:
    assert plan(shop(artifact, traffic, *numbers), current) == want


def test_tags_are_part_of_the_route(artifact: Path) -> None:
    desired = shop(artifact, {1: 100, 2: 0}, 1, 2, canary=2)
    assert route_of(desired) == route({"shop-00001": 100, "shop-00002": 0}, canary="shop-00002")


def test_revision_without_a_resolved_artifact_fails_with_what_to_do(artifact: Path) -> None:
    desired = shop(artifact, {1: 100}, 1)
    unresolved = DesiredService(desired.service, desired.revisions, desired.traffic, {})
    (fail, _) = plan(unresolved, Current())
    assert isinstance(fail, Fail)
    assert fail.reason == "ArtifactMissing"
    assert "sos push" in fail.message


def test_the_route_carries_the_sticky_key_and_shadows_and_a_shadow_is_started(
    artifact: Path,
) -> None:
    from dataclasses import replace

    from sos.models import Shadow
    from sos.runtime.local.ingress import ShadowTarget

    desired = shop(artifact, {1: 100}, 1, 2)
    assert desired.traffic is not None
    traffic = desired.traffic.model_copy(
        update={
            "split_by": "query:user_id",
            "shadow": [Shadow(revision="shop-00002", percent=25, items_path="data[].id")],
        }
    )
    desired = replace(desired, traffic=traffic)
    assert desired.routable() == {"shop-00001", "shop-00002"}  # kept like a routed one
    got = route_of(desired)
    assert got is not None
    assert got.split_by == ("query", "user_id")
    assert got.shadows == (ShadowTarget("shop-00002", 25, "data[].id"),)
