"""The Knative backend against a stand-in Kubernetes API server over real HTTP: apply,
observe, delete, restarts, recreating lost revisions, and errors as SOS errors."""

from __future__ import annotations

import base64
import dataclasses
import json
import socket
from pathlib import Path

import pytest
from knative_samples import artifact, desired, revision
from knative_standin import NAMESPACE, KnativeStandIn, write_kubeconfig

from sos.errors import BackendError, ConflictError, PermissionDeniedError, ValidationError
from sos.runtime.knative import KnativeBackend, KnativeSettings

TWO = [revision(1), revision(2)]


async def test_apply_creates_the_knative_service_with_server_side_apply(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    await backend.apply(desired([revision(1)]))
    service = standin.service("recs")
    assert service["metadata"]["namespace"] == NAMESPACE  # from the kubeconfig context
    assert service["spec"]["template"]["metadata"]["name"] == "recs-00001"
    assert service["metadata"]["managedFields"] == [{"manager": "sos", "operation": "Apply"}]
    assert standin.apply_params[-1] == {
        "fieldManager": "sos",
        "force": "true",
        "fieldValidation": "Strict",
    }
    assert standin.revision_names("recs") == ["recs-00001"]


async def test_observe_reads_status_back(backend: KnativeBackend, standin: KnativeStandIn) -> None:
    await backend.apply(desired(TWO, routes=[(2, 90, None), (1, 10, "canary")]))
    observed = await backend.observe("recs")
    assert observed is not None
    assert (observed.name, observed.ready, observed.reason) == ("recs", True, "Ready")
    assert observed.url == "http://recs.sos-test.example.com"
    assert observed.tag_urls == {"canary": "http://canary-recs.sos-test.example.com"}
    assert sorted(observed.revisions) == ["recs-00001", "recs-00002"]
    assert observed.revisions["recs-00001"].url == "http://canary-recs.sos-test.example.com"
    assert observed.revisions["recs-00002"].instances.running == 1


async def test_apply_twice_changes_nothing_the_second_time(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    state = desired(TWO, routes=[(2, 50, None), (1, 50, None)])
    await backend.apply(state)
    generation = standin.service("recs")["metadata"]["generation"]
    revisions = standin.revision_names("recs")
    applies = len(standin.applies)
    await backend.apply(state)
    assert standin.service("recs")["metadata"]["generation"] == generation
    assert standin.revision_names("recs") == revisions
    assert len(standin.applies) == applies  # nothing to change: no write at all


async def test_traffic_changes_are_applied_exactly_including_a_removed_tag(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    await backend.apply(desired(TWO, routes=[(2, 90, None), (1, 10, "canary")]))
    await backend.apply(desired(TWO, routes=[(2, 90, None), (1, 10, None)]))
    assert standin.service("recs")["spec"]["traffic"] == [
        {"revisionName": "recs-00002", "percent": 90, "latestRevision": False},
        {"revisionName": "recs-00001", "percent": 10, "latestRevision": False},
    ]
    observed = await backend.observe("recs")
    assert observed is not None and observed.tag_urls == {}


async def test_while_a_revision_deploys_the_cluster_is_read_at_most_once_a_second(
    kubeconfig: Path, standin: KnativeStandIn
) -> None:
    now = [0.0]
    knative = KnativeBackend(KnativeSettings(kubeconfig=str(kubeconfig)), clock=lambda: now[0])
    await knative.start()
    try:
        state = desired(TWO, routes=[(2, 50, None), (1, 50, None)])
        await knative.apply(state)
        await knative.observe("recs")
        reads = standin.reads
        for _ in range(3):  # the reconciler converging every 0.25 s
            now[0] += 0.25
            await knative.apply(state)
            assert (await knative.observe("recs")) is not None
        assert standin.reads == reads  # nothing changed, nothing read again
        now[0] += 0.25
        await knative.apply(state)  # a second later: checked again (GET + LIST) ...
        observed = await knative.observe("recs")  # ... and observe reuses that read
        assert standin.reads == reads + 2
        assert observed is not None and observed.ready
        applies = len(standin.applies)
        await knative.apply(desired(TWO, routes=[(2, 100, None)]))  # a change: at once
        assert len(standin.applies) == applies + 1
        observed = await knative.observe("recs")  # after a write: read afresh
        assert observed is not None and observed.tag_urls == {}
        assert standin.reads == reads + 6
    finally:
        await knative.close()


async def test_apply_after_a_restart_with_other_settings_keeps_existing_revisions(
    backend: KnativeBackend, standin: KnativeStandIn, kubeconfig: Path
) -> None:
    await backend.apply(desired(TWO))
    await backend.close()
    moved = KnativeSettings(kubeconfig=str(kubeconfig), image_registry="new.example.com/sos")
    restarted = KnativeBackend(moved, poll_interval=0.01)
    await restarted.start()
    try:
        generation = standin.service("recs")["metadata"]["generation"]
        await restarted.apply(desired(TWO))  # Knative would refuse a changed template
        assert standin.service("recs")["metadata"]["generation"] == generation
        await restarted.apply(desired([*TWO, revision(3)]))
        images = {
            name: standin.revisions[(NAMESPACE, name)]["spec"]["containers"][0]["image"]
            for name in standin.revision_names("recs")
        }
        assert images["recs-00002"].startswith("localhost:5000/sos/")
        assert images["recs-00003"] == "new.example.com/sos/runtime-python:3.11"
    finally:
        await restarted.close()


async def test_new_revision_without_traffic_is_created_and_traffic_stays(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    await backend.apply(desired([revision(1)]))
    await backend.apply(desired(TWO, routes=[(1, 100, None)]))
    service = standin.service("recs")
    assert service["spec"]["template"]["metadata"]["name"] == "recs-00002"
    assert [t["revisionName"] for t in service["spec"]["traffic"]] == ["recs-00001"]
    observed = await backend.observe("recs")
    assert observed is not None and observed.ready
    assert observed.revisions["recs-00002"].instances.running == 0  # not routable


async def test_lost_revisions_are_recreated_oldest_first(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    three = [*TWO, revision(3)]
    state = desired(three, routes=[(3, 80, None), (1, 20, "canary")])
    await backend.apply(state)
    standin.delete_revision(NAMESPACE, "recs-00001")  # e.g. deleted by hand
    observed = await backend.observe("recs")
    assert observed is not None and observed.reason == "RevisionMissing"

    before = len(standin.applies)
    await backend.apply(state)
    templates = [a["spec"]["template"]["metadata"]["name"] for a in standin.applies[before:]]
    assert templates == ["recs-00001", "recs-00003"]
    assert "recs-00001" in standin.revision_names("recs")
    observed = await backend.observe("recs")
    assert observed is not None and observed.ready


async def test_a_deleted_knative_service_is_rebuilt_with_every_routed_revision(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    state = desired([*TWO, revision(3)], routes=[(2, 50, None), (1, 50, None)])
    await backend.apply(state)
    del standin.services[(NAMESPACE, "recs")]
    standin.revisions.clear()  # as if someone ran `kubectl delete ksvc recs`
    await backend.apply(state)
    assert standin.revision_names("recs") == ["recs-00001", "recs-00002", "recs-00003"]
    observed = await backend.observe("recs")
    assert observed is not None and observed.ready


async def test_apply_says_clearly_when_knative_does_not_create_a_revision(
    kubeconfig: Path, standin: KnativeStandIn
) -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    knative = KnativeBackend(
        KnativeSettings(kubeconfig=str(kubeconfig)),
        revision_timeout=30,
        poll_interval=5,
        sleep=sleep,
        clock=lambda: now[0],
    )
    await knative.start()
    try:
        standin.pause()  # the Knative controller is down
        with pytest.raises(BackendError, match=r"did not create revision recs-00001 .* within 30s"):
            await knative.apply(desired(TWO, routes=[(2, 50, None), (1, 50, None)]))
        assert now[0] >= 30
        standin.resume()
        await knative.apply(desired(TWO, routes=[(2, 50, None), (1, 50, None)]))
        assert standin.revision_names("recs") == ["recs-00001", "recs-00002"]
    finally:
        await knative.close()


async def test_a_failing_revision_is_reported_failed(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    standin.failing_images.add("localhost:5000/sos/runtime-node:20")
    node = artifact(language="node", runtime_version="20")
    await backend.apply(desired([revision(1)], artifacts=[node]))
    observed = await backend.observe("recs")
    assert observed is not None
    assert (observed.ready, observed.reason) == (False, "RevisionFailed")
    failed = observed.revisions["recs-00001"]
    assert (failed.failed, failed.reason) == (True, "ExitCode1")


async def test_no_traffic_yet_applies_nothing(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    await backend.apply(desired([], routes=[]))
    assert standin.applies == []
    assert await backend.observe("recs") is None


async def test_delete_removes_the_service_and_is_idempotent(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    await backend.apply(desired(TWO))
    await backend.delete("recs")
    assert standin.services == {} and standin.revision_names("recs") == []
    assert await backend.observe("recs") is None
    await backend.delete("recs")  # nothing left: no error


async def test_list_services_lists_only_what_sos_manages(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    await backend.apply(desired([revision(1)]))
    await backend.apply(desired([revision(1, service="ads")], service="ads"))
    standin.services[(NAMESPACE, "hand-made")] = {
        "metadata": {"name": "hand-made", "labels": {"team": "x"}}
    }
    assert await backend.list_services() == ["ads", "recs"]


async def test_list_services_sees_only_its_own_instance(
    kubeconfig: Path, standin: KnativeStandIn
) -> None:
    staging = KnativeBackend(KnativeSettings(kubeconfig=str(kubeconfig), instance="staging"))
    prod = KnativeBackend(KnativeSettings(kubeconfig=str(kubeconfig)))
    await staging.start()
    await prod.start()
    try:
        await staging.apply(desired([revision(1)]))
        await prod.apply(desired([revision(1, service="ads")], service="ads"))
        # each server deletes the orphans it lists: never the other server's services
        assert await staging.list_services() == ["recs"]
        assert await prod.list_services() == ["ads"]
    finally:
        await staging.close()
        await prod.close()


async def test_explicit_namespace_wins_over_the_kubeconfig(
    kubeconfig: Path, standin: KnativeStandIn
) -> None:
    knative = KnativeBackend(KnativeSettings(kubeconfig=str(kubeconfig), namespace="ml-prod"))
    await knative.start()
    try:
        await knative.apply(desired([revision(1)]))
        assert ("ml-prod", "recs") in standin.services
        assert await knative.list_services() == ["recs"]
    finally:
        await knative.close()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("verb", "status", "reason", "message", "error", "says"),
    [
        (
            "apply",
            403,
            "Forbidden",
            'services.serving.knative.dev "recs" is forbidden: User '
            '"system:serviceaccount:sos:sos" cannot patch resource "services"',
            PermissionDeniedError,
            "cannot patch resource",
        ),
        (
            "apply",
            409,
            "Conflict",
            'Operation cannot be fulfilled on services.serving.knative.dev "recs": '
            "object is being deleted",
            ConflictError,
            "object is being deleted",
        ),
        (
            "apply",
            422,
            "Invalid",
            'Service.serving.knative.dev "recs" is invalid: spec.traffic[0].percent: Invalid',
            ValidationError,
            "spec.traffic",
        ),
        ("apply", 500, "InternalError", "etcdserver: request timed out", BackendError, "etcd"),
        ("apply", 401, "Unauthorized", "Unauthorized", BackendError, "credentials"),
        ("get", 403, "Forbidden", "cannot get resource", PermissionDeniedError, "cannot get"),
    ],
    ids=["forbidden", "conflict", "invalid", "internal", "unauthorized", "forbidden-read"],
)
async def test_cluster_errors_become_sos_errors_naming_the_cause(
    backend: KnativeBackend,
    standin: KnativeStandIn,
    verb: str,
    status: int,
    reason: str,
    message: str,
    error: type[Exception],
    says: str,
) -> None:
    standin.fail(verb, "recs", status, reason, message)
    with pytest.raises(error, match=says) as caught:
        await backend.apply(desired([revision(1)]))
    assert 'Knative Service "recs" in namespace "sos-test"' in str(caught.value)
    assert getattr(caught.value, "details", {})["kubernetes_status"] == status


async def test_webhook_refusal_is_a_validation_error_with_knatives_words(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    standin.fail(
        "apply",
        "recs",
        400,
        "BadRequest",
        'admission webhook "validation.webhook.serving.knative.dev" denied the request: '
        "validation failed: invalid value: 0: spec.template.metadata.annotations."
        "autoscaling.knative.dev/initial-scale=0 not allowed by cluster",
    )
    with pytest.raises(ValidationError, match="initial-scale=0 not allowed by cluster"):
        await backend.apply(desired([revision(1, autoscaling={"initial_scale": 0})]))


async def test_invalid_causes_are_listed(backend: KnativeBackend, standin: KnativeStandIn) -> None:
    standin.fail(
        "apply",
        "recs",
        422,
        "Invalid",
        'Service "recs" is invalid',
        causes=[{"field": "spec.template.spec.containers[0].image", "message": "Required value"}],
    )
    with pytest.raises(ValidationError) as caught:
        await backend.apply(desired([revision(1)]))
    assert "spec.template.spec.containers[0].image: Required value" in caught.value.message
    assert caught.value.details["causes"] == [
        "spec.template.spec.containers[0].image: Required value"
    ]


async def test_unreachable_api_server_is_a_backend_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    knative = KnativeBackend(KnativeSettings(kubeconfig=str(config)), request_timeout=5)
    await knative.start()
    try:
        with pytest.raises(BackendError, match=f"cannot reach the Kubernetes API at .*:{port}"):
            await knative.observe("recs")
    finally:
        await knative.close()


async def test_missing_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    knative = KnativeBackend(KnativeSettings(kubeconfig=str(tmp_path / "nope")), in_cluster=False)
    with pytest.raises(BackendError, match=r"cannot load the kubeconfig.*SOS_KNATIVE_KUBECONFIG"):
        await knative.start()


async def test_unstarted_backend_says_so() -> None:
    with pytest.raises(BackendError, match="not started"):
        await KnativeBackend(KnativeSettings()).observe("recs")


# --------------------------------------------------------------------------- logs


async def test_logs_show_the_tail_of_every_pod_oldest_first(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    await backend.apply(desired(TWO, routes=[(2, 50, None), (1, 50, None)]))
    one, two = "recs-00001-deployment-7d9f8", "recs-00002-deployment-7d9f8"
    for text in ("starting", "listening on 8080"):
        standin.log(one, text)
    standin.log(two, "starting")
    standin.log(one, "GET / 200")
    lines = [line async for line in backend.logs("recs", tail=3)]
    assert [(line.revision, line.instance, line.text) for line in lines] == [
        ("recs-00001", one, "listening on 8080"),
        ("recs-00002", two, "starting"),
        ("recs-00001", one, "GET / 200"),
    ]
    assert lines[0].at < lines[1].at < lines[2].at
    only = [line.text async for line in backend.logs("recs", "recs-00002")]
    assert only == ["starting"]


async def test_logs_follow_yields_only_new_lines(kubeconfig: Path, standin: KnativeStandIn) -> None:
    polls = []

    async def sleep(seconds: float) -> None:
        polls.append(seconds)
        standin.log("recs-00001-deployment-7d9f8", f"line {len(polls) + 1}")

    knative = KnativeBackend(KnativeSettings(kubeconfig=str(kubeconfig)), sleep=sleep)
    await knative.start()
    try:
        await knative.apply(desired([revision(1)]))
        standin.log("recs-00001-deployment-7d9f8", "line 1")
        seen = []
        async for line in knative.logs("recs", follow=True):
            seen.append(line.text)
            if len(seen) == 3:
                break
        assert seen == ["line 1", "line 2", "line 3"]
        assert polls == [2.0, 2.0]
    finally:
        await knative.close()


async def test_logs_skip_pods_that_have_not_started(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    await backend.apply(desired([revision(1)]))  # its pod exists but printed nothing yet
    assert [line async for line in backend.logs("recs")] == []


async def test_a_secret_becomes_a_kubernetes_secret_referenced_never_inlined(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    uses = revision(1, env_vars=[{"id": "DB_PASSWORD", "secret": "db-password"}])
    wanted = dataclasses.replace(desired([uses]), secrets={"db-password": "hunter2"})
    await backend.apply(wanted)
    (name, stored), *_ = standin.secrets.items()
    assert name == (NAMESPACE, f"sos-{wanted.service.team}-db-password")
    assert base64.b64decode(stored["data"]["value"]) == b"hunter2"
    template = standin.service("recs")["spec"]["template"]["spec"]
    assert template["automountServiceAccountToken"] is False
    (container,) = template["containers"]
    (env,) = [e for e in container["env"] if e["name"] == "DB_PASSWORD"]
    assert env == {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": name[1], "key": "value"}},
    }
    assert "hunter2" not in json.dumps(standin.service("recs"))
    # a rotation is applied again, to the Secret only
    await backend.apply(dataclasses.replace(wanted, secrets={"db-password": "rotated"}))
    assert base64.b64decode(standin.secrets[name]["data"]["value"]) == b"rotated"


async def test_each_team_gets_a_namespace_of_its_own(
    kubeconfig: Path, standin: KnativeStandIn
) -> None:
    settings = KnativeSettings(
        kubeconfig=str(kubeconfig),
        artifact_url="http://sos.sos-system.svc:8700",
        team_namespaces="sos-",
    )
    knative = KnativeBackend(settings, poll_interval=0.01, revision_timeout=2, min_interval=0)
    await knative.start()
    try:
        ml = dataclasses.replace(
            desired([revision(1, env_vars=[{"id": "DB", "secret": "db"}])], team="ml"),
            secrets={"db": "pw-ml"},
        )
        ads = desired([revision(1, service="ads")], service="ads", team="ads")
        await knative.apply(ml)
        await knative.apply(ads)
        assert set(standin.namespaces) == {"sos-ml", "sos-ads"}
        assert standin.namespaces["sos-ml"]["metadata"]["labels"]["sos.dev/team"] == "ml"
        assert standin.service("recs", namespace="sos-ml")["metadata"]["name"] == "recs"
        assert standin.service("ads", namespace="sos-ads")["metadata"]["name"] == "ads"
        assert (NAMESPACE, "recs") not in standin.services  # nothing in the shared one
        assert list(standin.secrets) == [("sos-ml", "sos-ml-db")]  # in its team's namespace
        observed = await knative.observe("recs")
        assert observed is not None and observed.name == "recs"
        await knative.apply(ml)  # again: the namespace is not created twice
    finally:
        await knative.close()
    # a restarted server finds each service's namespace by listing across the cluster
    again = KnativeBackend(settings, poll_interval=0.01, revision_timeout=2, min_interval=0)
    await again.start()
    try:
        assert await again.list_services() == ["ads", "recs"]
        assert (await again.observe("ads")) is not None
        await again.delete("ads")
        assert ("sos-ads", "ads") not in standin.services
    finally:
        await again.close()
    with pytest.raises(ValueError, match="team namespace prefix"):
        KnativeSettings(team_namespaces="Bad_Prefix")


async def test_config_files_become_a_configmap_mounted_read_only(
    backend: KnativeBackend, standin: KnativeStandIn
) -> None:
    files = [
        {"path": "app.yaml", "content": "mode: prod\n"},
        {"path": "conf/k.json", "content": "{}"},
    ]
    await backend.apply(desired([revision(1, files=files)]))
    (key, config_map), *_ = standin.config_maps.items()
    assert key == (NAMESPACE, "recs-00001-files")
    assert config_map["data"] == {"f0": "mode: prod\n", "f1": "{}"}
    spec = standin.service("recs")["spec"]["template"]["spec"]  # valid against Knative's CRD
    assert spec["volumes"][0]["configMap"]["items"] == [
        {"key": "f0", "path": "app.yaml"},
        {"key": "f1", "path": "conf/k.json"},
    ]
    (container,) = spec["containers"]
    assert container["volumeMounts"] == [
        {"name": "sos-config", "mountPath": "/sos/config", "readOnly": True}
    ]
    assert {"name": "SOS_CONFIG_DIR", "value": "/sos/config"} in container["env"]
