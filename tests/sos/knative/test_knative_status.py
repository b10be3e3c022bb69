"""What Knative reports, read back as SOS status (table tests of a pure function)."""

from __future__ import annotations

from typing import Any

import pytest

from sos.models import Instances
from sos.runtime.knative import observed_service


def ksvc(
    *,
    generation: int = 2,
    observed: int = 2,
    ready: str = "True",
    reason: str | None = None,
    message: str | None = None,
    traffic: list[dict[str, Any]] | None = None,
    url: str | None = "http://recs.ml.example.com",
) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": "Ready", "status": ready}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    status: dict[str, Any] = {"observedGeneration": observed, "conditions": [condition]}
    if url:
        status["url"] = url
    if traffic is not None:
        status["traffic"] = traffic
    return {
        "metadata": {"name": "recs", "namespace": "ml", "generation": generation},
        "spec": {"traffic": [dict(t, url=None) for t in traffic or []]},
        "status": status,
    }


def rev(
    name: str, ready: str = "True", reason: str | None = None, replicas: int = 0
) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": "Ready", "status": ready}
    if reason:
        condition["reason"] = reason
        condition["message"] = f"{reason} happened"
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [condition],
            "actualReplicas": replicas,
            "desiredReplicas": replicas + 1,
        },
    }


@pytest.mark.parametrize(
    ("service", "want"),
    [
        (ksvc(), (True, "Ready", None)),
        (ksvc(observed=1), (False, "Deploying", "Knative has not processed the latest change yet")),
        (
            ksvc(
                ready="False",
                reason="RevisionMissing",
                message='Revision "recs-00001" referenced in traffic not found.',
            ),
            (False, "RevisionMissing", 'Revision "recs-00001" referenced in traffic not found.'),
        ),
        (ksvc(ready="Unknown"), (False, "Deploying", None)),
        (
            {"metadata": {"name": "recs", "generation": 1}},
            (False, "Deploying", "Knative has not processed the latest change yet"),
        ),
    ],
    ids=["ready", "stale-generation", "revision-missing", "unknown", "no-status-yet"],
)
def test_service_readiness(service: dict[str, Any], want: tuple[bool, str, str | None]) -> None:
    observed = observed_service(service, [])
    assert (observed.ready, observed.reason, observed.message) == want


def test_revisions_tags_and_urls() -> None:
    traffic = [
        {"revisionName": "recs-00002", "percent": 100, "latestRevision": False},
        {
            "revisionName": "recs-00001",
            "percent": 0,
            "tag": "canary",
            "latestRevision": False,
            "url": "http://canary-recs.ml.example.com",
        },
    ]
    observed = observed_service(
        ksvc(traffic=traffic),
        [rev("recs-00001"), rev("recs-00002", replicas=3), rev("recs-00003", "False", "ExitCode1")],
    )
    assert observed.url == "http://recs.ml.example.com"
    assert observed.tag_urls == {"canary": "http://canary-recs.ml.example.com"}
    one, two, three = (observed.revisions[f"recs-0000{n}"] for n in (1, 2, 3))
    assert one.url == "http://canary-recs.ml.example.com" and one.ready
    assert two.instances == Instances(wanted=4, running=3, ready=3) and two.url is None
    assert (three.ready, three.failed, three.reason, three.message) == (
        False,
        True,
        "ExitCode1",
        "ExitCode1 happened",
    )


def test_deploying_revision_is_not_failed() -> None:
    observed = observed_service(ksvc(), [rev("recs-00001", "Unknown", "Deploying")])
    revision = observed.revisions["recs-00001"]
    assert (revision.ready, revision.failed, revision.reason) == (False, False, "Deploying")


def test_domain_fills_urls_knative_has_not_reported() -> None:
    service = ksvc(url=None, traffic=None)
    service["spec"]["traffic"] = [{"revisionName": "recs-00001", "percent": 100, "tag": "blue"}]
    observed = observed_service(service, [rev("recs-00001")], domain="apps.example.org")
    assert observed.url == "http://recs.ml.apps.example.org"
    assert observed.tag_urls == {"blue": "http://blue-recs.ml.apps.example.org"}
    assert observed.revisions["recs-00001"].url == "http://blue-recs.ml.apps.example.org"
