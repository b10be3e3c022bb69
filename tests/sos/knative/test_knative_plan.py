"""How an apply drives Knative: given the cluster state and SOS's desired state, want the
sequence of applies (table tests of a pure function)."""

from __future__ import annotations

from typing import Any

import pytest
from knative_crd import schema_errors
from knative_samples import desired, revision

from sos.runtime.knative import ClusterState, KnativeSettings, plan_apply, render_service
from sos.runtime.knative.plan import template_from_revision
from sos.runtime.knative.render import render_revision_template

SETTINGS = KnativeSettings(namespace="ml")
THREE = [revision(1), revision(2), revision(3)]


def names(steps: list[Any]) -> list[tuple[str, str | None]]:
    return [(s.manifest["spec"]["template"]["metadata"]["name"], s.wait_for) for s in steps]


def existing(*numbers: int, settings: KnativeSettings = SETTINGS) -> dict[str, Any]:
    """Revisions as the cluster holds them: rendered once, then defaulted by Knative."""
    state = desired(THREE)
    out = {}
    for n in numbers:
        template = render_revision_template(state, THREE[n - 1], settings)
        template["spec"]["timeoutSeconds"] = 300  # a Knative default
        out[f"recs-{n:05d}"] = template
    return out


@pytest.mark.parametrize(
    ("routes", "cluster", "want"),
    [
        ([(3, 100, None)], ClusterState(), [("recs-00003", None)]),
        (
            [(3, 50, None), (1, 50, None)],
            ClusterState(),
            [("recs-00001", "recs-00001"), ("recs-00003", None)],
        ),
        (
            [(2, 90, None), (1, 10, "canary")],
            ClusterState(),
            [("recs-00001", "recs-00001"), ("recs-00002", "recs-00002"), ("recs-00003", None)],
        ),
        (
            [(2, 100, None), (1, 0, "old")],
            ClusterState(revisions=existing(1)),
            [("recs-00002", "recs-00002"), ("recs-00003", None)],
        ),
        ([(1, 100, None)], ClusterState(revisions=existing(1, 2, 3)), [("recs-00003", None)]),
        (
            [(1, 100, None), (2, 0, None)],
            ClusterState(),
            [("recs-00001", "recs-00001"), ("recs-00003", None)],
        ),
    ],
    ids=[
        "latest-only",
        "split-on-new-cluster",
        "tagged-old-revision",
        "one-missing",
        "all-exist",
        "untagged-zero-is-not-needed",
    ],
)
def test_plan_creates_missing_routable_revisions_oldest_first(
    routes: list[tuple[int, int, str | None]], cluster: ClusterState, want: list[Any]
) -> None:
    steps = plan_apply(desired(THREE, routes=routes), SETTINGS, cluster)
    assert names(steps) == want
    final_traffic = render_service(desired(THREE, routes=routes), SETTINGS)["spec"]["traffic"]
    for step in steps:
        assert step.manifest["spec"]["traffic"] == final_traffic
        assert schema_errors(step.manifest) == []


def test_plan_reuses_the_clusters_template_when_it_names_the_latest_revision() -> None:
    moved = KnativeSettings(namespace="ml", image_registry="new.example.com/sos")
    current = existing(3)["recs-00003"]
    steps = plan_apply(desired(THREE), moved, ClusterState(template=current, revisions=existing(3)))
    assert len(steps) == 1
    template = steps[0].manifest["spec"]["template"]
    assert template == current  # not re-rendered: Knative refuses a changed template
    assert template["spec"]["containers"][0]["image"].startswith("localhost:5000/sos/")


def test_plan_rebuilds_an_existing_revision_from_the_cluster_not_from_settings() -> None:
    moved = KnativeSettings(namespace="ml", image_registry="new.example.com/sos")
    cluster = ClusterState(template=existing(2)["recs-00002"], revisions=existing(2, 3))
    steps = plan_apply(desired(THREE, routes=[(2, 100, None)]), moved, cluster)
    template = steps[-1].manifest["spec"]["template"]
    assert template["metadata"]["name"] == "recs-00003"
    assert template["spec"] == existing(3)["recs-00003"]["spec"]


def test_plan_renders_new_revisions_with_the_current_settings() -> None:
    moved = KnativeSettings(namespace="ml", image_registry="new.example.com/sos")
    cluster = ClusterState(template=existing(2)["recs-00002"], revisions=existing(1, 2))
    steps = plan_apply(desired(THREE, routes=[(2, 100, None)]), moved, cluster)
    image = steps[-1].manifest["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "new.example.com/sos/runtime-python:3.11"


def test_template_from_revision_keeps_what_a_template_set_and_drops_what_knative_added() -> None:
    revision_object = {
        "metadata": {
            "name": "recs-00002",
            "labels": {
                "sos.dev/team": "ml",
                "serving.knative.dev/service": "recs",
                "serving.knative.dev/configurationGeneration": "4",
            },
            "annotations": {
                "autoscaling.knative.dev/min-scale": "1",
                "serving.knative.dev/no-gc": "true",
                "serving.knative.dev/creator": "system:serviceaccount:sos:sos",
                "serving.knative.dev/routingStateModified": "2026-01-01T00:00:00Z",
            },
        },
        "spec": {"containers": [{"image": "x"}], "timeoutSeconds": 300},
    }
    assert template_from_revision(revision_object) == {
        "metadata": {
            "name": "recs-00002",
            "labels": {"sos.dev/team": "ml"},
            "annotations": {
                "autoscaling.knative.dev/min-scale": "1",
                "serving.knative.dev/no-gc": "true",
            },
        },
        "spec": {"containers": [{"image": "x"}], "timeoutSeconds": 300},
    }
