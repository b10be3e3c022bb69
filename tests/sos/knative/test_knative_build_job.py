"""The Kubernetes Job of a remote build on Knative: a pure function, checked field by field
against the Kubernetes API's own model (the official client's ``V1Job``), then applied and
watched with the official client against the stand-in API server."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
from knative_standin import NAMESPACE, KnativeStandIn

from sos.models import Build
from sos.runtime.knative.build_job import (
    BOOTSTRAP,
    apply_build_job,
    build_job_name,
    job_outcome,
    render_build_job,
    watch_build_job,
)
from sos.runtime.knative.settings import KnativeSettings

SETTINGS = KnativeSettings(namespace="builds", image_registry="registry.example.com/sos")


def model_errors(value: Any, kind: str, where: str = "") -> list[str]:
    """Every field of ``value`` the Kubernetes model ``kind`` does not have, or of the
    wrong type (the API server refuses them under strict field validation)."""
    listed = re.fullmatch(r"(?i)list\[(.+)\]", kind)
    if listed:
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        inner = listed[1]
        return [e for i, v in enumerate(value) for e in model_errors(v, inner, f"{where}[{i}]")]
    mapped = re.fullmatch(r"(?i)dict[\[(]str, (.+)[\])]", kind)
    if mapped:
        if not isinstance(value, dict):
            return [f"{where}: not a map"]
        return [e for k, v in value.items() for e in model_errors(v, mapped[1], f"{where}.{k}")]
    simple = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
    if kind in simple:
        ok = isinstance(value, simple[kind]) and not (kind == "int" and isinstance(value, bool))
        return [] if ok else [f"{where}: {value!r} is not {kind}"]
    model = getattr(kubernetes.client, kind)
    if not isinstance(value, dict):
        return [f"{where}: not an object ({kind})"]
    fields = {json_name: name for name, json_name in model.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in fields:
            errors.append(f"{where}.{key}: {kind} has no such field")
        else:
            errors += model_errors(item, model.openapi_types[fields[key]], f"{where}.{key}")
    return errors


def a_build(**changes: Any) -> Build:
    values: dict[str, Any] = {
        "id": "20261204155335-1fc346d2",
        "state": "queued",
        "source_digest": "sha256:" + "a" * 64,
        "source_size": 1234,
        "created_by": "alice",
        "team": "recs",
        "created_at": datetime(2026, 12, 4, tzinfo=UTC),
        "timeout_seconds": 900.0,
        "project": "examples/movielens",
    }
    return Build(**{**values, **changes})


def render(build: Build | None = None, **options: Any) -> dict[str, Any]:
    return render_build_job(
        build or a_build(),
        language=options.pop("language", "python"),
        runtime_version=options.pop("runtime_version", "3.11"),
        settings=SETTINGS,
        control_url="http://sos.sos-system.svc:8700",
        token_secret="sos-build-token",
        **options,
    )


def test_the_job_is_a_valid_kubernetes_job() -> None:
    job = render()
    assert model_errors(job, "V1Job") == []
    parsed = kubernetes.client.ApiClient().deserialize(json.dumps(job), "V1Job", "application/json")
    assert parsed.spec.template.spec.containers[0].name == "builder"
    assert render() == job  # a pure function


def test_it_runs_on_the_runtime_image_bounded_and_unprivileged() -> None:
    job = render()
    spec = job["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/sos/runtime-python:3.11"
    assert spec["activeDeadlineSeconds"] == 900 and spec["backoffLimit"] == 0
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["SOS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "sos-build-token",
        "key": "token",
    }
    assert env["SOS_BUILD_PROJECT"]["value"] == "examples/movielens"
    assert job["metadata"]["namespace"] == "builds"
    assert job["metadata"]["labels"]["sos.dev/team"] == "recs"
    assert container["command"][:3] == ["python3", "-I", "-c"]
    compile(BOOTSTRAP, "bootstrap", "exec")


@pytest.mark.parametrize(
    ("language", "version", "image"),
    [("node", "20.11.1", "runtime-node:20"), ("jvm", "17.0.2", "runtime-jvm:17")],
)
def test_each_language_builds_on_its_own_image(language: str, version: str, image: str) -> None:
    job = render(language=language, runtime_version=version)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/" + image)
    assert model_errors(job, "V1Job") == []


def test_names_are_dns_labels() -> None:
    name = build_job_name(a_build(id="X" * 80))
    assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)


def test_the_check_catches_what_the_api_server_would_refuse() -> None:
    job = render()
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["imag"] = container.pop("image")
    job["spec"]["backoffLimit"] = "0"
    assert model_errors(job, "V1Job") == [
        ".spec.backoffLimit: '0' is not int",
        ".spec.template.spec.containers[0].imag: V1Container has no such field",
    ]


async def test_applied_and_watched_with_the_official_client(
    kubeconfig: Path, standin: KnativeStandIn
) -> None:
    from kubernetes.aio import client as k8s
    from kubernetes.aio import config as k8s_config

    configuration = k8s.Configuration()
    await k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
    )
    job = render()
    job["metadata"]["namespace"] = NAMESPACE
    name = job["metadata"]["name"]
    async with k8s.ApiClient(configuration) as api:
        await apply_build_job(api, job)
        stored = standin.jobs[(NAMESPACE, name)]
        assert (
            stored["spec"] == job["spec"]
            and stored["metadata"]["labels"] == (job["metadata"]["labels"])
        )
        watching = asyncio.create_task(watch_build_job(api, name, NAMESPACE, poll=0.01))
        await asyncio.sleep(0.05)
        assert not watching.done()  # still running
        standin.finish_job(name, "Complete")
        assert await watching == ("succeeded", None)
        # the deadline passed: timed out, with Kubernetes' reason
        second = render(a_build(id="20261204160000-00000002"))
        second["metadata"]["namespace"] = NAMESPACE
        await apply_build_job(api, second)
        standin.finish_job(second["metadata"]["name"], "Failed", "DeadlineExceeded")
        assert await watch_build_job(api, second["metadata"]["name"], NAMESPACE, poll=0.01) == (
            "timed_out",
            "DeadlineExceeded",
        )
        assert await watch_build_job(api, name, NAMESPACE, poll=0.01, within=0) == (
            "succeeded",
            None,
        )


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (None, ("queued", None)),
        ({"active": 1}, ("running", None)),
        ({"conditions": [{"type": "Complete", "status": "True"}]}, ("succeeded", None)),
        (
            {
                "conditions": [
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
                ]
            },
            ("failed", "BackoffLimitExceeded"),
        ),
        ({"active": 1, "conditions": [{"type": "Failed", "status": "False"}]}, ("running", None)),
    ],
)
def test_job_outcome(status: dict[str, Any] | None, outcome: tuple[str, str | None]) -> None:
    assert job_outcome(status) == outcome
