"""Rendering SOS services into Knative Services: table tests (given SOS objects -> want
manifest), every rendered manifest validated against Knative's CRD schema and webhook rules."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from knative_crd import schema_errors
from knative_samples import DIGEST_A, DIGEST_B, artifact, desired, revision

from sos.errors import ValidationError
from sos.runtime.base import DesiredService
from sos.runtime.knative import (
    KnativeSettings,
    check_webhook_rules,
    export_yaml,
    render_service,
    runtime_image,
)

SETTINGS = KnativeSettings(namespace="ml", artifact_url="http://sos.sos-system.svc:8700")


def render(given: DesiredService, settings: KnativeSettings = SETTINGS) -> dict[str, Any]:
    manifest = render_service(given, settings)
    assert schema_errors(manifest) == []
    assert check_webhook_rules(manifest) == []
    return manifest


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def env(manifest: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(manifest)["env"]}


def annotations(manifest: dict[str, Any]) -> dict[str, str]:
    return manifest["spec"]["template"]["metadata"]["annotations"]  # type: ignore[no-any-return]


def test_render_full_service_with_canary_tag() -> None:
    given = desired(
        [
            revision(1),
            revision(
                2,
                env_vars=[{"id": "LOG_LEVEL", "value": "debug"}],
                resources={"memory": "512Mi", "cpu": "500m"},
                health_check={"liveness_probe": "/live", "readiness_probe": "/ready"},
                gunicorn_config={"worker_count": 2, "thread_count": 4},
                autoscaling={"min_scale": 1, "max_scale": 8, "target_concurrency": 20},
            ),
        ],
        routes=[("recs-00002", 90, None), ("recs-00001", 10, "canary")],
    )
    digest = DIGEST_A
    probe = {
        "initialDelaySeconds": 0,
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "failureThreshold": 3,
    }
    assert render(given) == {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": "recs",
            "namespace": "ml",
            "labels": {
                "app.kubernetes.io/managed-by": "sos",
                "sos.dev/instance": "sos",
                "sos.dev/team": "ml",
            },
        },
        "spec": {
            "template": {
                "metadata": {
                    "name": "recs-00002",
                    "labels": {"app.kubernetes.io/managed-by": "sos", "sos.dev/team": "ml"},
                    "annotations": {
                        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
                        "autoscaling.knative.dev/metric": "concurrency",
                        "autoscaling.knative.dev/min-scale": "1",
                        "autoscaling.knative.dev/max-scale": "8",
                        "autoscaling.knative.dev/initial-scale": "1",
                        "autoscaling.knative.dev/target": "20",
                        "autoscaling.knative.dev/target-utilization-percentage": "70",
                        "autoscaling.knative.dev/window": "60s",
                        "autoscaling.knative.dev/panic-window-percentage": "10",
                        "autoscaling.knative.dev/panic-threshold-percentage": "200",
                        "autoscaling.knative.dev/scale-down-delay": "0s",
                        "serving.knative.dev/no-gc": "true",
                        "serving.knative.dev/progress-deadline": "60s",
                        "sos.dev/artifact": "recs@v1",
                        "sos.dev/artifact-digest": digest,
                    },
                },
                "spec": {
                    "containerConcurrency": 8,
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "user-container",
                            "image": "localhost:5000/sos/runtime-python:3.11",
                            "ports": [{"name": "http1", "containerPort": 8080}],
                            "env": [
                                {"name": "LOG_LEVEL", "value": "debug"},
                                {"name": "HOST", "value": "0.0.0.0"},
                                {"name": "SOS_SERVICE", "value": "recs"},
                                {"name": "SOS_REVISION", "value": "recs-00002"},
                                {"name": "SOS_WORKER_COUNT", "value": "2"},
                                {"name": "SOS_THREAD_COUNT", "value": "4"},
                                {"name": "SOS_WORKER_CLASS", "value": ""},
                                {"name": "SOS_TIMEOUT_SECONDS", "value": "30"},
                                {"name": "SOS_MEMORY_BYTES", "value": str(512 * 2**20)},
                                {"name": "SOS_ARTIFACT_DIGEST", "value": digest},
                                {"name": "SOS_ARTIFACT_LANGUAGE", "value": "python"},
                                {
                                    "name": "SOS_ARTIFACT_URL",
                                    "value": "http://sos.sos-system.svc:8700"
                                    f"/api/v1/blobs/{digest}",
                                },
                            ],
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "512Mi"},
                                "limits": {"cpu": "500m", "memory": "512Mi"},
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/ready"},
                                **probe,
                                "successThreshold": 1,
                            },
                            "livenessProbe": {"httpGet": {"path": "/live"}, **probe},
                            "securityContext": {
                                "runAsNonRoot": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ],
                },
            },
            "traffic": [
                {"revisionName": "recs-00002", "percent": 90, "latestRevision": False},
                {
                    "revisionName": "recs-00001",
                    "percent": 10,
                    "tag": "canary",
                    "latestRevision": False,
                },
            ],
        },
    }


@pytest.mark.parametrize(
    ("language", "runtime_version", "image", "concurrency"),
    [
        ("python", "3.12.1", "localhost:5000/sos/runtime-python:3.12", 1),
        ("node", "20.11.0", "localhost:5000/sos/runtime-node:20", 0),
        ("node", "v18", "localhost:5000/sos/runtime-node:18", 0),
        ("go", "1.19", "localhost:5000/sos/runtime-go:static", 0),
        ("jvm", "17.0.2", "localhost:5000/sos/runtime-jvm:17", 0),
        ("jvm", "1.8.0_292", "localhost:5000/sos/runtime-jvm:8", 0),
    ],
)
def test_render_image_and_concurrency_per_language(
    language: str, runtime_version: str, image: str, concurrency: int
) -> None:
    meta = artifact(language=language, runtime_version=runtime_version)
    manifest = render(desired([revision(1)], artifacts=[meta]))
    assert container(manifest)["image"] == image
    assert manifest["spec"]["template"]["spec"]["containerConcurrency"] == concurrency
    assert env(manifest)["SOS_ARTIFACT_LANGUAGE"] == language


# given the revision spec -> want (a path into the rendered container or template, value)
CASES: list[tuple[str, dict[str, Any], list[tuple[str, Any]]]] = [
    (
        "probes off",
        {"health_check": {"liveness_probe": None, "readiness_probe": None}},
        [("container.readinessProbe", None), ("container.livenessProbe", None)],
    ),
    (
        "fractional probe seconds round up, never below 1",
        {
            "health_check": {
                "initial_delay_seconds": 2.5,
                "period_seconds": 0.5,
                "timeout_seconds": 1.2,
            }
        },
        [
            ("container.readinessProbe.initialDelaySeconds", 3),
            ("container.readinessProbe.periodSeconds", 1),
            ("container.livenessProbe.timeoutSeconds", 2),
        ],
    ),
    (
        "env values are kept literally: Kubernetes would expand $(VAR)",
        {"env_vars": [{"id": "PATTERN", "value": "$(HOME) costs $$5"}]},
        [("env.PATTERN", "$$(HOME) costs $$$$5")],
    ),
    (
        "cpu only: no memory, no SOS_MEMORY_BYTES",
        {"resources": {"cpu": "2"}},
        [
            ("container.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}}),
            ("env.SOS_MEMORY_BYTES", None),
        ],
    ),
    ("no resources: none rendered", {}, [("container.resources", None)]),
    (
        "the app's port is the container port; Knative sets PORT from it",
        {"port": 9000},
        [("container.ports", [{"name": "http1", "containerPort": 9000}]), ("env.PORT", None)],
    ),
    (
        "no port: 8080",
        {},
        [("container.ports", [{"name": "http1", "containerPort": 8080}])],
    ),
    (
        "workers x threads is the container concurrency",
        {"gunicorn_config": {"worker_count": 4, "thread_count": 8, "worker_class": "gthread"}},
        [("spec.containerConcurrency", 32), ("env.SOS_WORKER_CLASS", "gthread")],
    ),
    (
        "autoscaling numbers: whole-second windows, plain numbers",
        {
            "autoscaling": {
                "min_scale": 2,
                "max_scale": 10,
                "initial_scale": 3,
                "target_concurrency": 0.5,
                "target_utilization_percentage": 85.5,
                "stable_window_seconds": 6.4,
                "panic_window_percentage": 12.5,
                "panic_threshold_percentage": 150,
                "scale_down_delay_seconds": 90,
            }
        },
        [
            ("annotation.min-scale", "2"),
            ("annotation.max-scale", "10"),
            ("annotation.initial-scale", "3"),
            ("annotation.target", "0.5"),
            ("annotation.target-utilization-percentage", "85.5"),
            ("annotation.window", "6s"),
            ("annotation.panic-window-percentage", "12.5"),
            ("annotation.panic-threshold-percentage", "150"),
            ("annotation.scale-down-delay", "90s"),
        ],
    ),
]


def _pick(manifest: dict[str, Any], path: str) -> Any:
    head, _, rest = path.partition(".")
    if head == "env":
        return env(manifest).get(rest)
    if head == "annotation":
        return annotations(manifest).get("autoscaling.knative.dev/" + rest)
    if head == "container":
        node: Any = container(manifest)
    else:
        node, rest = manifest["spec"]["template"], path
    for part in rest.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@pytest.mark.parametrize(("case", "spec", "wants"), CASES, ids=[c[0] for c in CASES])
def test_render_revision_spec_table(
    case: str, spec: dict[str, Any], wants: list[tuple[str, Any]]
) -> None:
    manifest = render(desired([revision(1, **spec)]))
    for path, want in wants:
        assert _pick(manifest, path) == want, f"{case}: {path}"


def test_render_traffic_pins_revisions_and_drops_untagged_zero_routes() -> None:
    given = desired(
        [revision(1), revision(2), revision(3)],
        routes=[(3, 100, None), ("00002", 0, "next"), ("recs-00001", 0, None)],
    )
    assert render(given)["spec"]["traffic"] == [
        {"revisionName": "recs-00003", "percent": 100, "latestRevision": False},
        {"revisionName": "recs-00002", "percent": 0, "tag": "next", "latestRevision": False},
    ]


def test_render_template_is_the_latest_revision_even_without_traffic() -> None:
    given = desired([revision(1), revision(2)], routes=[(1, 100, None)])
    manifest = render(given)
    assert manifest["spec"]["template"]["metadata"]["name"] == "recs-00002"
    assert [t["revisionName"] for t in manifest["spec"]["traffic"]] == ["recs-00001"]


def test_render_each_revision_uses_its_own_artifact() -> None:
    node = artifact(digest=DIGEST_B, language="node", runtime_version="20")
    given = desired([revision(1), revision(2, digest=DIGEST_B)], artifacts=[artifact(), node])
    manifest = render(given)
    assert container(manifest)["image"].endswith("runtime-node:20")
    assert annotations(manifest)["sos.dev/artifact-digest"] == DIGEST_B


@pytest.mark.parametrize(
    ("settings", "check"),
    [
        (KnativeSettings(), lambda m: "namespace" not in m["metadata"]),
        (
            KnativeSettings(image_registry="registry.example.com:5000/ml/"),
            lambda m: container(m)["image"] == "registry.example.com:5000/ml/runtime-python:3.11",
        ),
        (
            KnativeSettings(artifact_url="https://cdn.example.com/blobs/{digest}?x=1"),
            lambda m: env(m)["SOS_ARTIFACT_URL"] == f"https://cdn.example.com/blobs/{DIGEST_A}?x=1",
        ),
        (KnativeSettings(), lambda m: "SOS_ARTIFACT_URL" not in env(m)),
        (
            KnativeSettings(artifact_token_secret="sos-artifact-reader"),
            lambda m: (
                env(m)["SOS_ARTIFACT_TOKEN"]
                == {"secretKeyRef": {"name": "sos-artifact-reader", "key": "token"}}
            ),
        ),
    ],
    ids=["no-namespace", "registry", "artifact-url-template", "no-artifact-url", "token-secret"],
)
def test_render_settings(settings: KnativeSettings, check: Any) -> None:
    assert check(render(desired([revision(1)]), settings))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (desired([revision(1, digest=DIGEST_B)]), "no metadata for"),
        (desired([revision(1)], artifacts=[artifact(runtime_version="unknown")]), "runtime image"),
        (desired([revision(1)], routes=[(2, 100, None)]), "not a revision of recs"),
        (desired([revision(1)], routes=[]), "no traffic route"),
        (desired([]), "no traffic route"),
        (
            desired([revision(1, gunicorn_config={"worker_count": 8, "thread_count": 200})]),
            "at most 1000",
        ),
        (
            desired(
                [revision(1, service="a" * 50)],
                routes=[("a" * 50 + "-00001", 100, "a-very-long-canary-tag")],
                service="a" * 50,
            ),
            "use a shorter tag",
        ),
    ],
    ids=[
        "unknown-artifact",
        "bad-runtime",
        "unknown-revision",
        "no-traffic",
        "no-revisions",
        "concurrency",
        "tag-host-too-long",
    ],
)
def test_render_refuses_what_knative_cannot_run(given: DesiredService, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        render_service(given, SETTINGS)


def test_render_refuses_an_artifact_without_digest() -> None:
    unresolved = revision(1).model_copy(
        update={"artifact": revision(1).artifact.model_copy(update={"digest": None})}
    )
    with pytest.raises(ValidationError, match="has no digest"):
        render_service(desired([unresolved]), SETTINGS)


def test_export_yaml_is_the_manifest_and_keeps_strings_quoted() -> None:
    given = desired([revision(1)])
    text = export_yaml(given, SETTINGS)
    assert yaml.safe_load(text) == render_service(given, SETTINGS)
    assert "min-scale: '0'" in text  # a bare 0 would be an int, which Kubernetes refuses


def test_runtime_image_names_each_language() -> None:
    images = {
        lang: runtime_image(artifact(language=lang, runtime_version=ver), "r.example/sos")
        for lang, ver in [("python", "3.11"), ("node", "20"), ("go", "1.22"), ("jvm", "21")]
    }
    assert images == {
        "python": "r.example/sos/runtime-python:3.11",
        "node": "r.example/sos/runtime-node:20",
        "go": "r.example/sos/runtime-go:static",
        "jvm": "r.example/sos/runtime-jvm:21",
    }


# --------------------------------------------------------------------------- property

_ENV_NAMES = st.from_regex(r"\A[A-Z][A-Z0-9_]{0,12}\Z").filter(
    lambda n: n != "PORT" and not n.startswith(("SOS_", "K_"))
)
_REVISION_SPEC = st.fixed_dictionaries(
    {
        "env_vars": st.lists(
            st.fixed_dictionaries(
                {
                    "id": _ENV_NAMES,
                    "value": st.text(
                        st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20
                    ),
                }
            ),
            max_size=4,
            unique_by=lambda e: e["id"],
        ),
        "resources": st.fixed_dictionaries(
            {
                "memory": st.sampled_from([None, "64Mi", "2G", "1.5Gi"]),
                "cpu": st.sampled_from([None, "100m", "0.5", "4"]),
            }
        ),
        "health_check": st.fixed_dictionaries(
            {
                "liveness_probe": st.sampled_from([None, "/", "/healthz"]),
                "readiness_probe": st.sampled_from([None, "/", "/ready?full=1"]),
                "initial_delay_seconds": st.floats(0, 3600),
                "period_seconds": st.floats(0.01, 3600),
                "timeout_seconds": st.floats(0.01, 3600),
                "failure_threshold": st.integers(1, 100),
            }
        ),
        "gunicorn_config": st.fixed_dictionaries(
            {"worker_count": st.integers(1, 8), "thread_count": st.integers(1, 100)}
        ),
        "autoscaling": st.integers(0, 1000).flatmap(
            lambda low: st.fixed_dictionaries(
                {
                    "min_scale": st.just(low),
                    "max_scale": st.integers(max(low, 1), 1000),
                    "initial_scale": st.integers(0, 1000),
                    "target_concurrency": st.floats(0.01, 10000),
                    "target_utilization_percentage": st.floats(1, 100),
                    "stable_window_seconds": st.floats(6, 3600),
                    "panic_window_percentage": st.floats(1, 100),
                    "panic_threshold_percentage": st.floats(110, 1000),
                    "scale_down_delay_seconds": st.floats(0, 3600),
                }
            )
        ),
    }
)


@st.composite
def _services(draw: st.DrawFn) -> DesiredService:
    name = draw(st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0-9]\Z").filter(lambda n: "--" not in n))
    count = draw(st.integers(1, 4))
    revisions = [revision(n, service=name, **draw(_REVISION_SPEC)) for n in range(1, count + 1)]
    picked = draw(st.lists(st.integers(1, count), min_size=1, max_size=count, unique=True))
    cuts = sorted(
        draw(st.lists(st.integers(0, 100), min_size=len(picked) - 1, max_size=len(picked) - 1))
    )
    percents = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    tags = draw(
        st.lists(
            st.sampled_from([None, "canary", "blue", "next"]),
            min_size=len(picked),
            max_size=len(picked),
        )
    )
    seen: set[str] = set()
    routes = []
    for number, percent, tag in zip(picked, percents, tags, strict=True):
        tag = tag if tag not in seen else None
        seen.add(str(tag))
        routes.append((number, percent, tag))
    if all(p == 0 and t is None for _, p, t in routes):
        routes[0] = (routes[0][0], 100, routes[0][2])
    return desired(revisions, routes=routes, service=name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_services())
def test_every_rendered_manifest_is_valid_for_knative(given_service: DesiredService) -> None:
    manifest = render_service(given_service, SETTINGS)
    assert schema_errors(manifest) == []
    assert check_webhook_rules(manifest) == []
    percents = [t["percent"] for t in manifest["spec"]["traffic"]]
    assert sum(percents) == 100
