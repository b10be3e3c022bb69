"""Knative's webhook rules: a manifest that breaks one is reported with the field and why."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from knative_samples import desired, revision

from sos.runtime.knative import KnativeSettings, check_webhook_rules, render_service
from sos.runtime.knative.rules import parse_duration

Manifest = dict[str, Any]
BASE = render_service(
    desired([revision(1), revision(2)], routes=[(2, 80, None), (1, 20, "canary")]),
    KnativeSettings(namespace="ml"),
)


def _container(m: Manifest) -> Manifest:
    return m["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def _annotate(key: str, value: str) -> Callable[[Manifest], None]:
    def change(m: Manifest) -> None:
        m["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/" + key] = value

    return change


BROKEN: list[tuple[str, Callable[[Manifest], None], str]] = [
    ("percents-sum", lambda m: m["spec"]["traffic"][0].update(percent=70), "sum to 90"),
    ("percent-range", lambda m: m["spec"]["traffic"][0].update(percent=120), "0-100"),
    ("percent-float", lambda m: m["spec"]["traffic"][0].update(percent=79.5), "whole number"),
    ("duplicate-tag", lambda m: m["spec"]["traffic"][0].update(tag="canary"), "more than one"),
    ("tag-not-dns", lambda m: m["spec"]["traffic"][1].update(tag="Canary_1"), "DNS-1035"),
    (
        "revision-prefix",
        lambda m: m["spec"]["template"]["metadata"].update(name="other-00001"),
        "must have the prefix 'recs-'",
    ),
    (
        "traffic-other-service",
        lambda m: m["spec"]["traffic"][0].update(revisionName="other-00002"),
        "not a revision of recs",
    ),
    (
        "latest-with-name",
        lambda m: m["spec"]["traffic"][0].update(latestRevision=True),
        "latestRevision must be false",
    ),
    ("url-in-spec", lambda m: m["spec"]["traffic"][0].update(url="http://x"), "not allowed"),
    (
        "reserved-env",
        lambda m: _container(m)["env"].append({"name": "K_REVISION", "value": "x"}),
        "set by Knative",
    ),
    (
        "reserved-port",
        lambda m: _container(m)["ports"][0].update(containerPort=8012),
        "reserved",
    ),
    ("port-name", lambda m: _container(m)["ports"][0].update(name="grpc"), "'http1' or 'h2c'"),
    (
        "probe-port",
        lambda m: _container(m)["readinessProbe"]["httpGet"].update(port=9000),
        "must match the container port",
    ),
    (
        "probe-timeout",
        lambda m: _container(m)["livenessProbe"].update(timeoutSeconds=0),
        "timeoutSeconds must be at least 1",
    ),
    (
        "two-containers",
        lambda m: m["spec"]["template"]["spec"]["containers"].append(copy.deepcopy(_container(m))),
        "exactly one container",
    ),
    (
        "queue-proxy",
        lambda m: _container(m).update(name="queue-proxy"),
        "reserved by Knative",
    ),
    (
        "concurrency",
        lambda m: m["spec"]["template"]["spec"].update(containerConcurrency=5000),
        "between 0 and 1000",
    ),
    ("min-above-max", _annotate("min-scale", "9"), "less than min-scale=9"),
    ("window-short", _annotate("window", "5s"), "between 6s and 1h"),
    ("window-fraction", _annotate("window", "6500ms"), "whole seconds"),
    ("window-garbage", _annotate("window", "a minute"), "not a duration"),
    ("delay-long", _annotate("scale-down-delay", "2h"), "between 0s and 1h"),
    ("target-small", _annotate("target", "0.001"), "at least 0.01"),
    ("utilization", _annotate("target-utilization-percentage", "0"), "between 1 and 100"),
    ("panic-threshold", _annotate("panic-threshold-percentage", "100"), "between 110 and 1000"),
    ("min-scale-text", _annotate("min-scale", "one"), "not a number"),
    (
        "autoscaling-on-service",
        lambda m: (
            m["metadata"]
            .setdefault("annotations", {})
            .update({"autoscaling.knative.dev/min-scale": "1"})
        ),
        "belong on spec.template.metadata",
    ),
    (
        "knative-label",
        lambda m: m["spec"]["template"]["metadata"]["labels"].update(
            {"serving.knative.dev/service": "x"}
        ),
        "reserves",
    ),
]


def test_rendered_manifest_keeps_every_rule() -> None:
    assert check_webhook_rules(BASE) == []


@pytest.mark.parametrize(("case", "change", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_webhook_rule_is_reported(
    case: str, change: Callable[[Manifest], None], message: str
) -> None:
    manifest = copy.deepcopy(BASE)
    change(manifest)
    problems = check_webhook_rules(manifest)
    assert any(message in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60s", 60),
        ("1m30s", 90),
        ("1h", 3600),
        ("0", 0),
        ("0s", 0),
        ("6500ms", 6.5),
        ("", None),
        ("60", None),
        ("1x", None),
        ("s", None),
    ],
)
def test_parse_duration_reads_go_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds
