"""SOS with the Knative backend, end to end over real HTTP on both sides: a real SOS API
server (its reconciler drives a KnativeBackend) and the stand-in Kubernetes API server;
and ``sos export`` against a real SOS server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from knative_crd import schema_errors
from knative_pods import Started, build_python, digest_of, run_entrypoint
from knative_samples import artifact
from knative_server_process import ADMIN_TOKEN, start_sos_server, stop_sos_server
from knative_standin import KnativeStandIn
from sos_cli import cli_runner
from typer.testing import CliRunner

from sos.cli import _load_commands, app
from sos.client import Client
from sos.errors import NotFoundError, ValidationError
from sos.models import Artifact, ArtifactMetadata, Revision, Rollout, Route, Service, TrafficRoute
from sos.runtime.knative import KnativeBackend, KnativeSettings, check_webhook_rules
from sos.server.backends import BackendContext, create_backend

if TYPE_CHECKING:
    from sos_server import RunningServer

_load_commands()

VERSIONS = {"v1": "sha256:" + "1" * 64, "v2": "sha256:" + "2" * 64}


class Catalog:
    """The artifact resolver seam of the control plane (``sos.server.core.ArtifactResolver``),
    standing in for the artifact store."""

    def __init__(self) -> None:
        self.known = {
            digest: artifact(digest=digest, version=version, runtime_version="3.11")
            for version, digest in VERSIONS.items()
        }

    def resolve(self, wanted: Artifact) -> ArtifactMetadata:
        for meta in self.known.values():
            if (meta.name, meta.version) == (wanted.name, wanted.version):
                return meta
        raise NotFoundError(f"no artifact {wanted.name}@{wanted.version}")

    def metadata(self, digest: str) -> ArtifactMetadata | None:
        return self.known.get(digest)


def with_catalog(server: RunningServer) -> RunningServer:
    server.state.resolver = Catalog()
    server.state.control.resolver = server.state.resolver
    return server


def deploy_two_revisions(server: RunningServer) -> None:
    with server.client() as admin:
        admin.apply(Service(name="recs", team="ml"))
        for version in ("v1", "v2"):
            admin.create_revision("recs", Revision(artifact=Artifact(name="recs", version=version)))
        admin.set_traffic(
            "recs",
            TrafficRoute(
                routes=[
                    Route(revision="recs-00002", percent=90),
                    Route(revision="recs-00001", percent=10, tag="canary"),
                ]
            ),
        )


async def test_sos_server_runs_services_on_knative(
    sos_server: Callable[..., RunningServer], kubeconfig: Path, standin: KnativeStandIn
) -> None:
    backend = KnativeBackend(
        KnativeSettings(kubeconfig=str(kubeconfig), artifact_url="http://sos:8700"),
        poll_interval=0.01,
    )
    server = with_catalog(await asyncio.to_thread(sos_server, backend=backend))
    await asyncio.to_thread(deploy_two_revisions, server)

    def wait() -> Revision:
        with server.client() as admin:
            return admin.wait_ready("recs", "recs-00002", timeout=30)

    ready = await asyncio.to_thread(wait)
    assert ready.status.ready
    assert standin.revision_names("recs") == ["recs-00001", "recs-00002"]
    ksvc = standin.service("recs")
    assert [(t["revisionName"], t["percent"]) for t in ksvc["spec"]["traffic"]] == [
        ("recs-00002", 90),
        ("recs-00001", 10),
    ]

    def status() -> Service:
        with server.client() as admin:
            return admin.get_service("recs")

    service = await asyncio.to_thread(status)
    for _ in range(100):  # the reconciler writes status a moment after the revision is ready
        if service.status.url:
            break
        await asyncio.sleep(0.05)
        service = await asyncio.to_thread(status)
    assert service.status.url == "http://recs.sos-test.example.com"
    assert {t.tag: t.url for t in service.status.traffic if t.tag} == {
        "canary": "http://canary-recs.sos-test.example.com"
    }

    def delete() -> None:
        with server.client() as admin:
            admin.delete_service("recs")

    await asyncio.to_thread(delete)
    for _ in range(100):
        if not standin.services:
            break
        await asyncio.sleep(0.05)
    assert standin.services == {}


# --------------------------------------------------------------------------- sos export


@pytest.fixture
def sos(server: RunningServer, tmp_path: Path) -> CliRunner:
    return cli_runner(
        server.url,
        server.admin_token,
        tmp_path,
        SOS_KNATIVE_NAMESPACE=None,
        SOS_IMAGE_REGISTRY=None,
        SOS_KNATIVE_ARTIFACT_URL=None,
    )


def export(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(app, ["export", *args])


def test_export_prints_the_knative_service_as_yaml(sos: CliRunner, server: RunningServer) -> None:
    deploy_two_revisions(with_catalog(server))
    result = export(sos, "recs", "-n", "ml", "--artifact-url", "http://sos.sos-system:8700")
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.stdout)
    assert schema_errors(manifest) == [] and check_webhook_rules(manifest) == []
    assert "# image registry: localhost:5000/sos (--image-registry" in result.stdout
    assert manifest["metadata"]["namespace"] == "ml"
    assert manifest["spec"]["template"]["metadata"]["name"] == "recs-00002"
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost:5000/sos/runtime-python:3.11"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SOS_ARTIFACT_URL"] == (f"http://sos.sos-system:8700/api/v1/blobs/{VERSIONS['v2']}")
    assert [
        (t["revisionName"], t["percent"], t.get("tag")) for t in manifest["spec"]["traffic"]
    ] == [
        ("recs-00002", 90, None),
        ("recs-00001", 10, "canary"),
    ]


def test_export_from_scratch_prints_one_step_per_needed_revision(
    sos: CliRunner, server: RunningServer
) -> None:
    deploy_two_revisions(with_catalog(server))
    result = sos.invoke(
        app, ["export", "recs", "--from-scratch"], env={"SOS_IMAGE_REGISTRY": "r.example/ml"}
    )
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["spec"]["template"]["metadata"]["name"] for d in documents] == [
        "recs-00001",
        "recs-00002",
    ]
    assert "# Step 1 of 2: creates revision recs-00001" in result.stdout
    for document in documents:
        assert schema_errors(document) == []
        image = document["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.startswith("r.example/ml/")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["recs"], 1, "has no digest"),  # no artifact store: the runtime image is unknown
        (["nope"], 1, "'nope' does not exist"),
        (["recs", "--image-registry", "Not A Registry"], 2, "host[:port]/path"),
    ],
)
def test_export_errors_say_what_to_do(
    sos: CliRunner, server: RunningServer, args: list[str], code: int, message: str
) -> None:
    with server.client() as admin:
        admin.apply(Service(name="recs", team="ml"))
        admin.create_revision("recs", Revision(artifact=Artifact(name="recs", version="v1")))
    result = export(sos, *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert json.dumps(result.stdout) == '""'  # nothing half-printed


# --------------------------------------------------------------------------- sos server


async def test_sos_server_command_runs_the_knative_backend(
    kubeconfig: Path, standin: KnativeStandIn, tmp_path: Path
) -> None:
    # a Knative Service SOS made once, for a service its store no longer has: an orphan
    mine = {"app.kubernetes.io/managed-by": "sos", "sos.dev/instance": "sos"}
    theirs = {"app.kubernetes.io/managed-by": "sos", "sos.dev/instance": "staging"}
    for name, labels in (("gone", mine), ("staging-svc", theirs)):
        standin.services[("ml", name)] = {
            "metadata": {"name": name, "labels": labels},
            "spec": {"template": {}, "traffic": []},
        }
    process, _ = await start_sos_server(
        kubeconfig, tmp_path / "data",
        "--knative-namespace", "ml", "--image-registry", "r.example/sos",
        "--knative-artifact-url", "http://sos.sos-system:8700",
    )  # fmt: skip
    try:
        for _ in range(200):  # the reconciler deletes orphans it finds after a start
            if ("ml", "gone") not in standin.services:
                break
            await asyncio.sleep(0.05)
        assert ("ml", "gone") not in standin.services
        assert ("ml", "staging-svc") in standin.services  # another SOS server's
    finally:
        await stop_sos_server(process)


def test_knative_flags_need_the_knative_backend(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["server", "--backend", "fake", "--image-registry", "r.example/sos", "--port", "0",
         "--data-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--image-registry: only with --backend knative" in result.stderr


def test_the_server_registry_builds_the_knative_backend_from_options(tmp_path: Path) -> None:
    context = BackendContext(
        data_dir=tmp_path,
        options={"namespace": "ml", "image-registry": "r.example/sos", "domain": "ex.com"},
    )
    backend = create_backend("knative", context)
    assert isinstance(backend, KnativeBackend)
    assert (backend.settings.namespace, backend.settings.image_registry) == ("ml", "r.example/sos")
    assert backend.settings.domain == "ex.com"
    with pytest.raises(ValidationError, match=r"unknown Knative backend option.*router_port"):
        create_backend("knative", BackendContext(data_dir=tmp_path, options={"router_port": "1"}))
    with pytest.raises(ValidationError, match="host\\[:port\\]/path"):
        create_backend(
            "knative", BackendContext(data_dir=tmp_path, options={"image_registry": "No Way"})
        )


# --------------------------------------------------------------------------- the whole chain


@pytest.fixture
def entrypoint(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Started]]:
    yield from run_entrypoint(tmp_path)


async def test_push_deploy_and_the_pod_downloads_from_sos_and_starts(
    kubeconfig: Path, standin: KnativeStandIn, tmp_path: Path, entrypoint: Any
) -> None:
    data = build_python(tmp_path)
    path = tmp_path / "echo-1.0.0.pyz"
    path.write_bytes(data)
    meta = artifact(
        digest=digest_of(data), name="echo", version="1.0.0", runtime_version="3.11"
    ).model_copy(update={"size": len(data), "filename": path.name, "entry_point": "__main__"})
    process, url = await start_sos_server(
        kubeconfig, tmp_path / "data",
        "--knative-namespace", "ml", "--knative-artifact-url", "http://sos.sos-system:8700",
        "--backend-opt", "artifact_token_secret=sos-artifact-reader",
    )  # fmt: skip
    try:

        def deploy() -> str:
            with Client(url, ADMIN_TOKEN) as admin:
                admin.push_artifact(path, metadata=meta)
                admin.apply(Service(name="echo", team="web"))
                admin.create_revision(
                    "echo", Revision(artifact=Artifact(name="echo", version="1.0.0"))
                )
                admin.wait_ready("echo", 1, timeout=30)
                return admin.create_token("knative-pods", role="reader").secret

        reader = await asyncio.to_thread(deploy)
        # what the kubelet would hand the container of revision echo-00001
        (container,) = standin.service("echo", "ml")["spec"]["template"]["spec"]["containers"]
        env = {}
        for item in container["env"]:
            if "valueFrom" in item:
                secret = item["valueFrom"]["secretKeyRef"]
                assert (secret["name"], secret["key"]) == ("sos-artifact-reader", "token")
                env[item["name"]] = reader
            else:
                env[item["name"]] = item["value"].replace("$$", "$")
        assert env["SOS_ARTIFACT_URL"].startswith("http://sos.sos-system:8700/api/v1/blobs/")
        # the pod reaches the SOS server by its service name; here it is on 127.0.0.1
        env["SOS_ARTIFACT_URL"] = env["SOS_ARTIFACT_URL"].replace("http://sos.sos-system:8700", url)
        env["HOST"] = "127.0.0.1"
        seen = (await asyncio.to_thread(entrypoint(env).answer))["env"]
        assert (seen["SOS_SERVICE"], seen["SOS_REVISION"]) == ("echo", "echo-00001")
    finally:
        await stop_sos_server(process)


# --------------------------------------------------------------------------- rollouts


async def test_a_rollout_steps_knative_traffic_and_refuses_gates_it_cannot_check(
    sos_server: Callable[..., RunningServer],
    kubeconfig: Path,
    standin: KnativeStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Knative a rollout's steps are spec.traffic updates; the Knative backend reports no
    request metrics to SOS, so gates (and a request minimum) are refused, never ignored."""
    monkeypatch.setenv("SOS_ROLLOUT_TICK", "0.1")
    backend = KnativeBackend(
        KnativeSettings(kubeconfig=str(kubeconfig), artifact_url="http://sos:8700"),
        poll_interval=0.01,
    )
    server = with_catalog(await asyncio.to_thread(sos_server, backend=backend))

    def deploy() -> None:
        with server.client() as admin:
            for version in ("v1", "v2"):
                admin.deploy(
                    Service(name="recs", team="ml"),
                    Revision(artifact=Artifact(name="recs", version=version)),
                )
            with pytest.raises(ValidationError, match="reports no request metrics"):
                admin.start_rollout("recs", Rollout(to="2", max_error_rate=0.01))
            with pytest.raises(ValidationError, match="min_requests"):
                admin.start_rollout("recs", Rollout(to="2"))
            admin.start_rollout("recs", Rollout(to="2", steps=[50, 100], step_seconds=1,
                                                min_requests=0))  # fmt: skip

    await asyncio.to_thread(deploy)
    seen: list[list[tuple[str, int]]] = []
    for _ in range(400):
        ksvc = standin.services.get(("sos-test", "recs"))
        if ksvc is not None:
            split = [(t["revisionName"], t["percent"]) for t in ksvc["spec"]["traffic"]]
            if not seen or seen[-1] != split:
                seen.append(split)
            if split == [("recs-00002", 100)]:
                break
        await asyncio.sleep(0.05)
    assert [("recs-00002", 50), ("recs-00001", 50)] in seen
    assert seen[-1] == [("recs-00002", 100)]

    def state() -> str:
        with server.client() as admin:
            return admin.get_rollout("recs").state

    for _ in range(100):
        if await asyncio.to_thread(state) == "succeeded":
            break
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(state) == "succeeded"
