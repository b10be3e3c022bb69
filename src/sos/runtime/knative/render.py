"""SOS desired state in, ``serving.knative.dev/v1`` Service manifests out: pure functions.

One Knative Service per SOS service. Its ``spec.template`` is one SOS revision (named by
``spec.template.metadata.name``, the SOS revision id ``{service}-{n:05d}``), normally the
latest; its ``spec.traffic`` is the SOS traffic route, every target pinned to a revision
by name (``latestRevision: false``). How several revisions come to exist in the cluster is
the job of ``sos.runtime.knative.plan``; ``docs/sos/knative.md`` tells the whole story.

A revision's template carries:

- the curated runtime image of the artifact's language (``runtime_image``) and the artifact
  by digest (env ``SOS_ARTIFACT_DIGEST`` + ``SOS_ARTIFACT_URL``, annotations
  ``sos.dev/artifact*``); the image's entrypoint downloads, verifies and starts it;
- the environment of ``sos.launch.launch_env`` (user variables, ``HOST``, ``SOS_*``) minus
  ``PORT``, which Knative sets;
- resources (requests = limits), ``httpGet`` probes on the serving port, the concurrency
  limit and the autoscaling annotations.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from typing import Any

import yaml

from sos import traffic
from sos.errors import ValidationError
from sos.launch import container_concurrency, launch_env
from sos.models import REVISION_ID, ArtifactMetadata, HealthCheck, Revision
from sos.runtime.base import DesiredService
from sos.runtime.knative.rules import MAX_CONTAINER_CONCURRENCY, check_webhook_rules
from sos.runtime.knative.settings import KnativeSettings

__all__ = [
    "API_VERSION",
    "INSTANCE_LABEL",
    "MANAGED_BY_LABEL",
    "export_yaml",
    "latest_revision",
    "render_revision_template",
    "render_service",
    "render_traffic",
    "revision_number",
    "runtime_image",
]

API_VERSION = "serving.knative.dev/v1"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
TEAM_LABEL = "sos.dev/team"
INSTANCE_LABEL = "sos.dev/instance"
ARTIFACT_ANNOTATION = "sos.dev/artifact"
DIGEST_ANNOTATION = "sos.dev/artifact-digest"
CONTAINER_NAME = "user-container"
CONTAINER_PORT = 8080
AUTOSCALING = "autoscaling.knative.dev/"

Manifest = dict[str, Any]


def revision_number(revision: Revision) -> int:
    """The ``n`` of ``{service}-{n:05d}``."""
    if revision.number is not None:
        return revision.number
    match = REVISION_ID.fullmatch(revision.id or "")
    if match is None:
        raise ValidationError(f"revision id {revision.id!r} is not of the form service-00001")
    return int(match["number"])


def latest_revision(desired: DesiredService) -> Revision:
    """The revision with the highest number: the one the Knative template describes."""
    if not desired.revisions:
        raise ValidationError(
            f"service {desired.service.name!r} has no revision yet: create one before "
            "rendering it for Knative"
        )
    return max(desired.revisions, key=revision_number)


def runtime_image(artifact: ArtifactMetadata, registry: str) -> str:
    """The curated image that runs ``artifact`` (``runtime-images/<language>/Dockerfile``).

    Tags follow the runtime: ``runtime-python:3.11``, ``runtime-node:20``,
    ``runtime-jvm:17``; Go binaries are static, so one ``runtime-go:static`` serves all.
    """
    numbers = re.findall(r"\d+", artifact.runtime_version)
    if artifact.language == "go":
        tag = "static"
    elif artifact.language == "python" and len(numbers) >= 2:
        tag = f"{numbers[0]}.{numbers[1]}"
    elif artifact.language == "jvm" and numbers:
        # "1.8.0_292" is Java 8; "17.0.2" is Java 17
        tag = numbers[1] if numbers[0] == "1" and len(numbers) > 1 else numbers[0]
    elif artifact.language == "node" and numbers:
        tag = numbers[0]
    else:
        raise ValidationError(
            f"artifact {artifact.name}@{artifact.version} has runtime_version "
            f"{artifact.runtime_version!r}, which names no {artifact.language} runtime image; "
            "rebuild it with sos build"
        )
    return f"{registry.rstrip('/')}/runtime-{artifact.language}:{tag}"


def _number(value: float) -> str:
    """A Go-parsable number without noise: 10.0 -> "10", 0.5 -> "0.5"."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _seconds(value: float) -> str:
    """A whole-second Go duration (Knative refuses sub-second windows and delays)."""
    return f"{round(value)}s"


def _k8s_escape(value: str) -> str:
    """Kubernetes expands ``$(VAR)`` and turns ``$$`` into ``$`` in env values; doubling
    every ``$`` makes the container see exactly the value the user wrote."""
    return value.replace("$", "$$")


def _probe(path: str, check: HealthCheck, *, readiness: bool) -> Manifest:
    # no port: Knative probes the serving port, and refuses any other
    probe: Manifest = {
        "httpGet": {"path": path},
        "initialDelaySeconds": math.ceil(check.initial_delay_seconds),
        "periodSeconds": max(1, math.ceil(check.period_seconds)),
        "timeoutSeconds": max(1, math.ceil(check.timeout_seconds)),
        "failureThreshold": check.failure_threshold,
    }
    if readiness:
        probe["successThreshold"] = 1
    return probe


def _artifact_of(desired: DesiredService, revision: Revision) -> ArtifactMetadata:
    digest = revision.artifact.digest
    where = (
        f"revision {revision.id} (artifact {revision.artifact.name}@{revision.artifact.version})"
    )
    if digest is None:
        raise ValidationError(
            f"{where} has no digest: the Knative backend starts artifacts by digest, so the "
            "server needs an artifact store that resolves name@version (push it with sos push)"
        )
    artifact = desired.artifacts.get(digest)
    if artifact is None:
        raise ValidationError(
            f"{where}: the server has no metadata for {digest}, so the runtime image "
            "(its language) is unknown; push the artifact to the SOS artifact store"
        )
    return artifact


def _autoscaling_annotations(revision: Revision) -> dict[str, str]:
    scaling = revision.autoscaling
    return {
        AUTOSCALING + "class": "kpa.autoscaling.knative.dev",
        AUTOSCALING + "metric": "concurrency",
        AUTOSCALING + "min-scale": str(scaling.min_scale),
        AUTOSCALING + "max-scale": str(scaling.max_scale),
        AUTOSCALING + "initial-scale": str(scaling.initial_scale),
        AUTOSCALING + "target": _number(scaling.target_concurrency),
        AUTOSCALING + "target-utilization-percentage": _number(
            scaling.target_utilization_percentage
        ),
        AUTOSCALING + "window": _seconds(scaling.stable_window_seconds),
        AUTOSCALING + "panic-window-percentage": _number(scaling.panic_window_percentage),
        AUTOSCALING + "panic-threshold-percentage": _number(scaling.panic_threshold_percentage),
        AUTOSCALING + "scale-down-delay": _seconds(scaling.scale_down_delay_seconds),
    }


def render_revision_template(
    desired: DesiredService, revision: Revision, settings: KnativeSettings
) -> Manifest:
    """The ``spec.template`` that makes Knative create ``revision`` (a pure function)."""
    service = desired.service
    artifact = _artifact_of(desired, revision)
    digest = artifact.digest
    if revision.service != service.name:
        revision = revision.model_copy(update={"service": service.name})

    port = revision.port or CONTAINER_PORT
    env = launch_env(revision, port=port, host="0.0.0.0")
    del env["PORT"]  # Knative sets PORT from the container port and refuses it in env
    env["SOS_ARTIFACT_DIGEST"] = digest
    env["SOS_ARTIFACT_LANGUAGE"] = artifact.language
    url = settings.artifact_download_url(digest)
    if url is not None:
        env["SOS_ARTIFACT_URL"] = url
    env_list: list[Manifest] = [{"name": k, "value": _k8s_escape(v)} for k, v in env.items()]
    # secrets are referenced, never inlined: the value lives in a Secret of the namespace
    env_list += [
        {
            "name": var.id,
            "valueFrom": {
                "secretKeyRef": {
                    "name": secret_object_name(service.team, var.secret),
                    "key": "value",
                }
            },
        }
        for var in revision.env_vars
        if var.secret
    ]
    if settings.artifact_token_secret:
        env_list.append(
            {
                "name": "SOS_ARTIFACT_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": settings.artifact_token_secret, "key": "token"}
                },
            }
        )

    if revision.files:  # the revision's config files, from its ConfigMap (render_config_map)
        env_list.append({"name": "SOS_CONFIG_DIR", "value": CONFIG_MOUNT})
    container: Manifest = {
        "name": CONTAINER_NAME,
        "image": runtime_image(artifact, settings.image_registry),
        "ports": [{"name": "http1", "containerPort": port}],
        "env": env_list,
    }
    if revision.files:
        container["volumeMounts"] = [
            {"name": "sos-config", "mountPath": CONFIG_MOUNT, "readOnly": True}
        ]
    amounts = {
        key: value
        for key, value in (("cpu", revision.resources.cpu), ("memory", revision.resources.memory))
        if value is not None
    }
    if amounts:
        container["resources"] = {"requests": dict(amounts), "limits": dict(amounts)}
    check = revision.health_check
    if check.readiness_probe is not None:
        container["readinessProbe"] = _probe(check.readiness_probe, check, readiness=True)
    if check.liveness_probe is not None:
        container["livenessProbe"] = _probe(check.liveness_probe, check, readiness=False)
    container["securityContext"] = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }

    annotations = _autoscaling_annotations(revision)
    annotations["serving.knative.dev/no-gc"] = "true"  # SOS revisions stay deployable
    # the start-up budget: Knative fails a revision that is not ready within it
    budget = check.startup_timeout_seconds + check.initial_delay_seconds
    annotations["serving.knative.dev/progress-deadline"] = f"{math.ceil(budget)}s"
    annotations[ARTIFACT_ANNOTATION] = f"{artifact.name}@{artifact.version}"
    annotations[DIGEST_ANNOTATION] = digest

    spec: Manifest = {}
    # sync and gthread workers serve workers x threads requests at once and Knative queues
    # the rest; asynchronous workers (gevent, uvicorn) and other runtimes get no hard limit
    # (0), the autoscaler's target still applies
    concurrency = container_concurrency(revision, artifact)
    if concurrency > MAX_CONTAINER_CONCURRENCY:
        raise ValidationError(
            f"revision {revision.id}: gunicorn worker_count x thread_count is "
            f"{concurrency}, Knative allows at most {MAX_CONTAINER_CONCURRENCY} requests "
            "at once per instance: lower thread_count (more instances scale out instead)"
        )
    spec["containerConcurrency"] = concurrency
    spec["containers"] = [container]
    if revision.files:
        spec["volumes"] = [
            {
                "name": "sos-config",
                "configMap": {
                    "name": config_map_name(revision),
                    "items": [
                        {"key": f"f{i}", "path": f.path} for i, f in enumerate(revision.files)
                    ],
                },
            }
        ]
    # an app has no business with the Kubernetes API: no service account token in its pod
    spec["automountServiceAccountToken"] = False

    return {
        "metadata": {
            "name": revision.id,
            "labels": {MANAGED_BY_LABEL: "sos", TEAM_LABEL: service.team},
            "annotations": annotations,
        },
        "spec": spec,
    }


CONFIG_MOUNT = "/sos/config"


def config_map_name(revision: Revision) -> str:
    """The ConfigMap that holds ``revision``'s config files (one per revision: immutable)."""
    return f"{revision.id}-files"


def render_config_map(revision: Revision, team: str) -> Manifest:
    """The ConfigMap of ``revision``'s config files (keys f0, f1, ... mapped to their paths
    by the volume; a pure function)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(revision),
            "labels": {MANAGED_BY_LABEL: "sos", TEAM_LABEL: team},
        },
        "data": {f"f{i}": f.content for i, f in enumerate(revision.files)},
    }


def secret_object_name(team: str, secret: str) -> str:
    """The Kubernetes Secret that holds ``team``'s secret ``secret``."""
    return f"sos-{team}-{secret}"


def render_secret(team: str, secret: str, value: str) -> Manifest:
    """The Kubernetes Secret object of ``team``'s secret ``secret`` (a pure function; its
    single key ``value`` is what revisions reference with ``secretKeyRef``)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_object_name(team, secret),
            "labels": {MANAGED_BY_LABEL: "sos", TEAM_LABEL: team},
        },
        "type": "Opaque",
        "data": {"value": base64.b64encode(value.encode()).decode()},
    }


def render_traffic(desired: DesiredService) -> list[Manifest]:
    """``spec.traffic``: each SOS route pinned to its revision by name.

    Routes with 0 percent and no tag are left out: SOS treats such a revision as not
    routable (it scales to zero), and Knative would keep it routable if it were listed.
    """
    name = desired.service.name
    if desired.traffic is None:
        return []
    known = {rev.id for rev in desired.revisions}
    targets: list[Manifest] = []
    for index, r in enumerate(traffic.normalize(name, desired.traffic).routes):
        if r.percent == 0 and not r.tag:
            continue
        if r.revision not in known:
            raise ValidationError(
                f"traffic route {index} sends traffic to {r.revision}, which is not a revision "
                f"of {name}; choose one of: {', '.join(sorted(str(k) for k in known))}"
            )
        target: Manifest = {"revisionName": r.revision, "percent": r.percent}
        if r.tag:
            target["tag"] = r.tag
        target["latestRevision"] = False
        targets.append(target)
    return targets


def render_service(
    desired: DesiredService,
    settings: KnativeSettings,
    *,
    template: Mapping[str, Any] | None = None,
) -> Manifest:
    """The Knative Service for ``desired``.

    ``template`` replaces the rendered ``spec.template`` (the latest revision by default):
    the backend passes one when it (re)creates an older revision, or reuses what the
    cluster already holds for a revision that exists there.
    Raises ``sos.errors.ValidationError`` when Knative would refuse the result.
    """
    service = desired.service
    if desired.traffic is None:
        raise ValidationError(
            f"service {service.name!r} has no traffic route yet; Knative needs one "
            "(the first revision gets 100% of the traffic when it is created)"
        )
    if template is None:
        template = render_revision_template(desired, latest_revision(desired), settings)
    metadata: Manifest = {"name": service.name}
    if settings.namespace:
        metadata["namespace"] = settings.namespace
    metadata["labels"] = {
        MANAGED_BY_LABEL: "sos",
        INSTANCE_LABEL: settings.instance,
        TEAM_LABEL: service.team,
    }
    manifest: Manifest = {
        "apiVersion": API_VERSION,
        "kind": "Service",
        "metadata": metadata,
        "spec": {"template": dict(template), "traffic": render_traffic(desired)},
    }
    problems = check_webhook_rules(manifest)
    if problems:
        raise ValidationError(
            f"Knative would refuse service {service.name!r}: " + "; ".join(problems),
            details={"problems": problems},
        )
    return manifest


def export_yaml(desired: DesiredService, settings: KnativeSettings | None = None) -> str:
    """The Knative Service of ``desired`` as YAML, for people and ``kubectl apply``."""
    manifest = render_service(desired, settings or KnativeSettings())
    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)
