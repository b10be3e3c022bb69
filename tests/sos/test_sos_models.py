"""Resource validation: good specs pass, bad ones fail with a message that says the fix."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from sos import (
    Artifact,
    Autoscaling,
    EnvVar,
    HealthCheck,
    Resources,
    Revision,
    RevisionSpec,
    Route,
    Service,
    TokenSpec,
    TrafficRoute,
    normalize_revision_ref,
)
from sos.models import revision_id, revision_parts


def test_the_issue_example_validates() -> None:
    revision = Revision(
        artifact=Artifact(name="sfix_service", version="v0.0.16"),
        env_vars=[EnvVar(id="env_var", value="env_value")],
        resources=Resources(memory="2G", cpu="1000m"),
        health_check=HealthCheck(liveness_probe="/", readiness_probe="/"),
        autoscaling=Autoscaling(min_scale=0, max_scale=5, target_concurrency=10),
    )
    spec = revision.spec()
    assert type(spec) is RevisionSpec and spec.resources.memory == "2G"
    assert Service(name="sfix-service", team="recs").spec().name == "sfix-service"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Service(name="Sfix_Service", team="recs"), "DNS-1035 label"),
        (lambda: Service(name="a" * 58, team="recs"), "at most 57"),
        (lambda: Service(name="-x", team="recs"), "starting with a letter"),
        (lambda: Service(name="ok", team="recs", colour="red"), "Extra inputs"),
        (lambda: Resources(memory="2 GB"), "512Mi"),
        (lambda: Resources(memory="100"), "too small"),
        (lambda: Resources(cpu="0"), "too small"),
        (lambda: EnvVar(id="PORT", value="1"), "reserved"),
        (lambda: EnvVar(id="SOS_X", value="1"), "reserved"),
        (lambda: EnvVar(id="1X", value="1"), "not starting with a digit"),
        (
            lambda: RevisionSpec(artifact=Artifact(name="a", version="1"), port=80),
            "greater than or equal to 1024",
        ),
        (
            lambda: RevisionSpec(artifact=Artifact(name="a", version="1"), port=8012),
            "reserved by the platform",
        ),
        (lambda: Artifact(name="../etc", version="1"), "no '..'"),
        (lambda: Artifact(name="a", version="1", digest="md5:x"), "sha256"),
        (lambda: Autoscaling(min_scale=6, max_scale=5), "lower min_scale"),
        (lambda: HealthCheck(readiness_probe="healthz"), "must start with '/'"),
        (lambda: Route(revision="1", percent=12.5), "whole number"),
        (
            lambda: TrafficRoute(routes=[Route(revision="1", percent=50)]),
            "sum to 100, these sum to 50",
        ),
        (
            lambda: TrafficRoute(
                routes=[
                    Route(revision="1", percent=50, tag="a"),
                    Route(revision="2", percent=50, tag="a"),
                ]
            ),
            "tag 'a' is used by more than one route",
        ),
        (lambda: TrafficRoute(routes=[]), "at least 1"),
        (
            lambda: RevisionSpec(
                artifact=Artifact(name="a", version="1"),
                env_vars=[EnvVar(id="A", value="1"), EnvVar(id="A", value="2")],
            ),
            "set twice",
        ),
        (lambda: TokenSpec(name="x", role="admin", team="recs"), "drop the team"),
        (lambda: Service(name="ok", team="recs", description="a\x00b"), "NUL"),
        (lambda: Autoscaling(target_concurrency=float("inf")), "finite"),
    ],
)
def test_bad_specs_are_rejected_with_the_fix(build: Any, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        build()


def test_revisions_cannot_be_changed_in_place_to_invalid_values() -> None:
    revision = Revision(artifact=Artifact(name="a", version="1"))
    with pytest.raises(pydantic.ValidationError):
        revision.resources = Resources(memory="lots")  # type: ignore[assignment]


@pytest.mark.parametrize("ref", [3, "3", "00003", "svc-00003", " 3 "])
def test_revision_refs_are_readable(ref: str | int) -> None:
    assert normalize_revision_ref("svc", ref) == "svc-00003"


@pytest.mark.parametrize(
    ("ref", "message"),
    [("other-00003", "belongs to service 'other'"), ("latest", "use its number"), (0, "use")],
)
def test_bad_revision_refs_say_how_to_write_one(ref: str | int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_revision_ref("svc", ref)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Service(name="shop\n", team="recs"),
        lambda: Service(name="shop", team="recs\n"),
        lambda: Route(revision="1", percent=100, tag="canary\n"),
        lambda: Artifact(name="app\n", version="1.0.0"),
        lambda: Artifact(name="app", version="1.0.0\n"),
        lambda: EnvVar(id="DB\n", value="x"),
    ],
)
def test_names_with_a_trailing_newline_are_refused(make: Any) -> None:
    """Patterns are anchored at both ends (fullmatch): ``$`` alone lets "canary\\n" through,
    and such a tag broke HAProxy's map updates for every tenant."""
    with pytest.raises(pydantic.ValidationError):
        make()


def test_a_route_list_is_bounded_and_checked_in_linear_time() -> None:
    many = [Route(revision=str(i), percent=0, tag=f"t{i}") for i in range(1, 101)]
    many[0] = Route(revision="1", percent=100, tag="t1")
    assert len(TrafficRoute(routes=many).routes) == 100
    with pytest.raises(pydantic.ValidationError, match="at most 100"):
        TrafficRoute(routes=[*many, Route(revision="101", percent=0)])


def test_a_revision_id_comes_apart_into_its_service_and_number() -> None:
    # service names have dashes of their own: only the last one separates the number
    assert revision_parts(revision_id("sfix-service", 3)) == ("sfix-service", "00003")
    assert normalize_revision_ref("sfix-service", revision_parts("sfix-service-00003")[1]) == (
        "sfix-service-00003"
    )
