"""A remote build as a Kubernetes ``Job`` on the curated runtime image: a pure function.

``render_build_job(build, ...)`` is the ``batch/v1`` Job that builds ``build`` on the
image its artifact will run on (``runtime-python:3.11``...), so that wheels and binaries
are the ones that image needs. Its one container, as the image's unprivileged user, with
no service account token and nothing but an ``emptyDir`` to write to:

1. downloads the build's source archive and SOS's build code (the toolkit of
   ``sos.server.build_sandbox``, as a tar) from the control plane, with a token of its own
   (a Secret, ``SOS_TOKEN``);
2. runs ``sos.build._remote_worker`` with ``python -I`` on them, its events on stdout (the
   pod's log, which the control plane reads);
3. uploads the artifact to the control plane, which records it with its provenance.

The Job is bounded by the build's timeout (``activeDeadlineSeconds``), never retried
(``backoffLimit: 0``), and deleted an hour after it ends.

``apply_build_job`` applies it with the official client (server-side apply, strict field
validation) and ``watch_build_job`` follows it to its outcome (``job_outcome``: succeeded,
failed, or timed out at its deadline); ``render_build_secret`` is the Secret that holds the
build's key. ``sos.runtime.knative.builds`` drives them for the server.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sos.build.runner import passed_on
from sos.models import ArtifactMetadata, Build
from sos.runtime.knative.render import MANAGED_BY_LABEL, TEAM_LABEL, runtime_image
from sos.runtime.knative.settings import KnativeSettings

__all__ = [
    "BOOTSTRAP",
    "BUILD_LABEL",
    "MEMORY",
    "build_environ",
    "build_image",
    "build_job_name",
    "job_outcome",
    "render_build_job",
    "render_build_secret",
]

BUILD_LABEL = "sos.dev/build"
WORK = "/sos/work"
#: the memory a build's pod may use (its request and limit)
MEMORY = "2Gi"
#: of what a build takes from the server's environment, what the Job sets itself
OWN_ENV = frozenset({"PIP_CACHE_DIR"})
#: what the container runs (standard library only: the runtime image has Python, not SOS)
BOOTSTRAP = """\
import json, os, subprocess, sys, tarfile, urllib.error, urllib.request
work, base = os.environ["SOS_WORK"], os.environ["SOS_URL"].rstrip("/")
auth = {"Authorization": "Bearer " + os.environ["SOS_TOKEN"]}
build = os.environ["SOS_BUILD_ID"]
def fail(message):
    print(json.dumps({"event": "error", "message": message}), flush=True)
    sys.exit(3)
def call(request, what):
    try:
        return urllib.request.urlopen(request, timeout=300)
    except urllib.error.HTTPError as exc:
        try:
            said = json.load(exc)["error"]["message"]
        except Exception:
            said = exc.reason
        hint = (f"; is {base} (SOS_KNATIVE_BUILD_URL) the server that runs build {build}?"
                if exc.code in (401, 404) else "")
        fail(f"the SOS server at {base} refused to {what}: HTTP {exc.code}: {said}{hint}")
    except (urllib.error.URLError, OSError) as exc:
        fail(f"the build's pod cannot reach the SOS server at {base} to {what}: "
             f"{getattr(exc, 'reason', exc)}; SOS_KNATIVE_BUILD_URL must be its address as "
             "pods reach it")
def fetch(path, target, what):
    request = urllib.request.Request(base + path, headers=auth)
    with call(request, what) as response, open(target, "wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)
    with tarfile.open(target) as tar:
        tar.extractall(target + ".d", filter="data")
    return target + ".d"
source = fetch(f"/api/v1/builds/{build}/source", f"{work}/source.tar.gz",
               "send the build's source")
toolkit = fetch(f"/api/v1/builds/{build}/toolkit.tar.gz", f"{work}/toolkit.tar.gz",
                "send SOS's build code")
request = {"source": f"{source}/{os.environ['SOS_BUILD_PROJECT']}", "out": f"{work}/out",
           "type": os.environ.get("SOS_BUILD_TYPE") or None,
           "frozen": os.environ.get("SOS_BUILD_FROZEN") == "1", "python": sys.executable}
with open(f"{work}/request.json", "w") as handle:
    json.dump(request, handle)
code = subprocess.call([sys.executable, "-I", "-c",
    f"import sys; sys.path.insert(0, {toolkit!r}); "
    "from sos.build._remote_worker import main; raise SystemExit(main())",
    f"{work}/request.json"])
for name in os.listdir(f"{work}/out") if code == 0 else []:
    path = f"{work}/out/{name}"
    with open(path, "rb") as handle:
        upload = urllib.request.Request(f"{base}/api/v1/builds/{build}/artifact/{name}",
                                        data=handle.read(), method="PUT", headers=auth)
    call(upload, f"take the build's {name}").close()
sys.exit(code)
"""


def build_image(language: str, runtime_version: str, registry: str) -> str:
    """The curated runtime image a build of ``language`` for ``runtime_version`` runs on:
    the one its artifact will run on."""
    probe = ArtifactMetadata(
        name="build",
        version="0",
        language=language,
        runtime_version=runtime_version,
        entry_point="-",
        digest="sha256:" + "0" * 64,
        size=0,
        created_by="-",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return runtime_image(probe, registry)


def build_job_name(build: Build) -> str:
    """``sos-build-<id>``: a DNS label (lowercase, at most 63 characters)."""
    return ("sos-build-" + re.sub(r"[^a-z0-9-]", "-", build.id.lower()))[:63].rstrip("-")


def render_build_job(
    build: Build,
    *,
    language: str,
    runtime_version: str,
    settings: KnativeSettings,
    control_url: str,
    token_secret: str,
    passed: Sequence[str] = (),
    cpu: str = "1",
    memory: str = MEMORY,
) -> dict[str, Any]:
    """The ``batch/v1`` Job that builds ``build`` (see the module docstring); ``passed``:
    the server's variables the build sees (pip's index, proxies: ``build_environ``), from
    the Secret, since an index URL may hold a password."""
    labels = {MANAGED_BY_LABEL: "sos", BUILD_LABEL: build_job_name(build)[10:]}
    if build.team:
        labels[TEAM_LABEL] = build.team
    env: list[dict[str, Any]] = [
        {"name": "SOS_URL", "value": control_url},
        {"name": "SOS_BUILD_ID", "value": build.id},
        {"name": "SOS_BUILD_PROJECT", "value": build.project},
        {"name": "SOS_BUILD_TYPE", "value": build.type or ""},
        {"name": "SOS_BUILD_FROZEN", "value": "1" if build.frozen else "0"},
        {"name": "SOS_WORK", "value": WORK},
        {"name": "TMPDIR", "value": f"{WORK}/tmp"},
        {"name": "SOS_CACHE_DIR", "value": f"{WORK}/cache"},
        {"name": "PIP_CACHE_DIR", "value": f"{WORK}/cache/pip"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {
            "name": "SOS_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "token"}},
        },
    ]
    env += [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": token_secret, "key": f"env.{name}"}}}
        for name in passed
        if name not in OWN_ENV
    ]
    container: dict[str, Any] = {
        "name": "builder",
        "image": build_image(language, runtime_version, settings.image_registry),
        "command": ["python3", "-I", "-c", BOOTSTRAP],
        "env": env,
        "workingDir": WORK,
        "volumeMounts": [{"name": "work", "mountPath": WORK}],
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": cpu, "memory": memory},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    metadata: dict[str, Any] = {"name": build_job_name(build), "labels": labels}
    if settings.namespace:
        metadata["namespace"] = settings.namespace
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": math.ceil(build.timeout_seconds or 1800),
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [container],
                    "volumes": [{"name": "work", "emptyDir": {"sizeLimit": "10Gi"}}],
                },
            },
        },
    }


def build_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """What of the server's environment a build's Job sees: what a local build sees
    (``sos.build.runner.passed_on``: pip's settings, proxies) but ``OWN_ENV`` and the
    files of the server (``PIP_CERT=/etc/...``, ``SSL_CERT_FILE``: not in the pod)."""
    return {
        name: value
        for name, value in passed_on(environ).items()
        if name not in OWN_ENV
        and not value.startswith("/")
        and re.fullmatch(r"[-._a-zA-Z0-9]+", name)
    }


def render_build_secret(
    build: Build, key: str, namespace: str, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The Secret ``sos-build-<id>`` whose key ``token`` is the build's key (valid for that
    build's routes while it runs); the Job reads it as ``SOS_TOKEN``, and the variables of
    ``environ`` (``build_environ``) from its keys ``env.NAME``."""
    labels = {MANAGED_BY_LABEL: "sos", BUILD_LABEL: build_job_name(build)[10:]}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": build_job_name(build), "namespace": namespace, "labels": labels},
        "type": "Opaque",
        "data": {
            "token": base64.b64encode(key.encode()).decode(),
            **{
                f"env.{name}": base64.b64encode(value.encode()).decode()
                for name, value in (environ or {}).items()
            },
        },
    }


def job_outcome(status: dict[str, Any] | None) -> tuple[str, str | None]:
    """A Job's ``status`` as a build state and reason: ``queued`` (no pod yet),
    ``running``, ``succeeded``, ``failed`` or ``timed_out`` (its deadline passed)."""
    status = status or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded", None
        if condition.get("type") == "Failed":
            reason = condition.get("reason") or ""
            message = condition.get("message") or reason or "the build's pod failed"
            return ("timed_out" if reason == "DeadlineExceeded" else "failed"), message
    if status.get("active"):
        return "running", None
    return "queued", None


async def apply_build_job(
    api: Any, job: dict[str, Any], *, request_timeout: float | None = None
) -> Any:
    """Create (or re-apply) the Job with server-side apply, strictly validated, through the
    official client (``kubernetes.aio``); ``api`` is its ``ApiClient``. The Job as the API
    server has it (a ``V1Job``: its ``metadata.uid``)."""
    from kubernetes.aio import client as k8s

    from sos.runtime.knative.backend import FIELD_MANAGER

    metadata = job["metadata"]
    return await k8s.BatchV1Api(api).patch_namespaced_job(
        metadata["name"],
        metadata.get("namespace") or "default",
        job,
        field_manager=FIELD_MANAGER,
        force=True,
        field_validation="Strict",
        _content_type="application/apply-patch+yaml",
        _request_timeout=request_timeout,
    )


async def watch_build_job(
    api: Any, name: str, namespace: str, *, poll: float = 1.0, within: float = 3600
) -> tuple[str, str | None]:
    """Poll the Job until it ends; its outcome (``job_outcome``), or ``timed_out`` when
    ``within`` seconds pass first."""
    import asyncio

    from kubernetes.aio import client as k8s

    batch = k8s.BatchV1Api(api)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        job = await batch.read_namespaced_job_status(name, namespace)
        status = job.status.to_dict() if job.status is not None else {}
        state, reason = job_outcome(status)
        if state not in ("queued", "running"):
            return state, reason
        if loop.time() >= deadline:
            return "timed_out", f"the build's Job did not end within {within:g} s"
        await asyncio.sleep(poll)
