"""A stand-in for a Kubernetes API server running Knative Serving, over real HTTP.

No real API server can run on these machines, so the Knative backend is tested against
this one: ``kmock`` serves HTTP (discovery and Kubernetes-shaped errors), and the handlers
below keep Knative Services and Revisions in memory the way the API server, Knative's
webhook and Knative's controllers would:

- server-side apply (``PATCH`` with ``application/apply-patch+yaml``, a field manager,
  strict field validation): creates or replaces what the manager applied, bumps
  ``metadata.generation`` when the spec changes, refuses what the CRD schema refuses (422)
  and what Knative's webhook refuses (400: name prefix, traffic sums, duplicate tags, a
  changed template under an unchanged name), and applies Knative's defaults;
- the controllers: a changed template creates the Revision it names (or fails when that
  name exists with another spec); status gets ``observedGeneration``, the Ready /
  ConfigurationsReady / RoutesReady conditions with reasons, ``latestCreatedRevisionName``,
  ``latestReadyRevisionName``, the URL and traffic with tag URLs; ``pause()`` stops them,
  as a stuck controller would;
- ``fail(verb, name, status, reason, message)`` makes the next such request fail the way
  the API server does (403 Forbidden, 409 Conflict, 422 Invalid, ...).

It is a test double at the one seam that cannot run here, written from the Knative and
Kubernetes documentation; the real-cluster test (``SOS_TEST_KUBECONFIG``) checks the same
behaviour against the real thing.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import yaml
from knative_crd import schema_errors

GROUP, VERSION = "serving.knative.dev", "v1"
SERVICES = kmock.resource(GROUP, VERSION, "services")
PODS = kmock.resource("", "v1", "pods")
SECRETS = kmock.resource("", "v1", "secrets")
CONFIG_MAPS = kmock.resource("", "v1", "configmaps")
REVISIONS = kmock.resource(GROUP, VERSION, "revisions")
JOBS = kmock.resource("batch", "v1", "jobs")
APPLY = "application/apply-patch+yaml"

Obj = dict[str, Any]


def _condition(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> Obj:
    condition: Obj = {"type": kind, "status": "True" if ok else "False"}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    condition["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    return condition


def _selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    for term in (selector or "").split(","):
        if term:
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
    return True


class KnativeStandIn:
    def __init__(self, handler: kmock.KubernetesScaffold, *, domain: str = "example.com") -> None:
        self.domain = domain
        self.services: dict[tuple[str, str], Obj] = {}
        self.revisions: dict[tuple[str, str], Obj] = {}
        self.applies: list[Obj] = []  # every accepted apply body, in order
        self.reads = 0  # GETs and LISTs of Services and Revisions
        self.apply_params: list[dict[str, str]] = []
        self.failing_images: set[str] = set()
        #: pods of ready, routable revisions (one each) and their output lines
        self.pods: dict[tuple[str, str], Obj] = {}
        self.pod_logs: dict[str, list[str]] = {}
        #: Secrets and ConfigMaps applied (server-side apply), by namespace and name
        self.secrets: dict[tuple[str, str], Obj] = {}
        self.config_maps: dict[tuple[str, str], Obj] = {}
        #: Jobs applied (remote builds), by namespace and name; ``finish_job`` ends one
        self.jobs: dict[tuple[str, str], Obj] = {}
        #: what runs a Job's pod when one is applied, and stops it when the Job is deleted
        #: (``knative_kubelet.JobKubelet``); None: Jobs stay active until ``finish_job``
        self.kubelet: Any = None
        #: a Job pod's container ended (set): ``follow`` streams its log until then
        self.pod_ended: dict[str, asyncio.Event] = {}
        #: namespaces created through the API (the kubeconfig's own is there already)
        self.namespaces: dict[str, Obj] = {}
        self._clock = itertools.count(1)
        self.running = True
        self._failures: dict[tuple[str, str], tuple[kmock.KubernetesError, int]] = {}
        self._stalled: set[tuple[str, str]] = set()
        self._unstalled = asyncio.Event()
        self._uids = itertools.count(1)
        self._versions = itertools.count(1)
        handler[kmock.action.UPDATE, SERVICES] << self._apply
        handler[kmock.action.UPDATE, SECRETS] << self._apply_secret
        handler[kmock.action.UPDATE, CONFIG_MAPS] << self._apply_config_map
        # /api/v1/namespaces/NAME parses as a namespace without a resource: match the path
        handler[kmock.method.PATCH, re.compile(r"^/api/v1/namespaces/[^/]+$")] << self._namespace
        handler[kmock.action.FETCH, SERVICES] << self._get_service
        handler[kmock.action.LIST, SERVICES] << self._list_services
        handler[kmock.action.DELETE, SERVICES] << self._delete_service
        handler[kmock.action.LIST, REVISIONS] << self._list_revisions
        handler[kmock.action.FETCH, REVISIONS] << self._get_revision
        handler[kmock.action.LIST, PODS] << self._list_pods
        handler[kmock.action.FETCH, PODS, kmock.subresource("log")] << self._pod_log
        handler[kmock.action.UPDATE, JOBS] << self._apply_job
        handler[kmock.action.DELETE, JOBS] << self._delete_job
        handler[kmock.action.DELETE, SECRETS] << self._delete_secret
        handler[kmock.action.FETCH, JOBS, kmock.subresource("status")] << self._get_job
        handler[kmock.action.FETCH, JOBS] << self._get_job

    # ------------------------------------------------------------------ test controls

    def fail(
        self,
        verb: str,
        name: str,
        status: int,
        reason: str,
        message: str,
        *,
        times: int = 1,
        **details: Any,
    ) -> None:
        """Make the next ``times`` ``verb`` (apply, get, list, delete; of a build's Secret:
        apply secret, delete secret) requests of ``name`` (``prefix*``: of any name it
        starts) fail like the API server does (``times=0``: until ``heal``)."""
        error = kmock.KubernetesError(
            status=status, reason=reason, message=message, details=details or {"name": name}
        )
        self._failures[(verb, name)] = (error, times or -1)

    def heal(self) -> None:
        """No more failures (``fail``)."""
        self._failures.clear()

    def stall(self, verb: str, name: str) -> None:
        """Make ``verb`` (apply, get, delete) requests of the Job ``name`` (``prefix*``: of
        any name it starts) hang, as an API server that stopped answering does, until
        ``unstall`` (then they are answered)."""
        self._stalled.add((verb, name))

    def unstall(self) -> None:
        self._stalled.clear()
        self._unstalled.set()
        self._unstalled = asyncio.Event()

    def finish_job(self, name: str, kind: str, reason: str = "", namespace: str = "") -> None:
        """End the Job ``name`` the way the Job controller does: ``kind`` Complete or
        Failed (with ``reason``, e.g. DeadlineExceeded)."""
        key = next(k for k in self.jobs if k[1] == name and (not namespace or k[0] == namespace))
        status = self.jobs[key].setdefault("status", {})
        status.pop("active", None)
        status["conditions"] = [_condition(kind, True, reason or None, reason or None)]

    def pause(self) -> None:
        self.running = False

    def resume(self) -> None:
        self.running = True
        for namespace, name in list(self.services):
            self._reconcile(namespace, name)

    def delete_revision(self, namespace: str, name: str) -> None:
        """What `kubectl delete revision` (or a garbage collector) does."""
        del self.revisions[(namespace, name)]
        for key in list(self.services):
            self._reconcile(*key)

    def log(self, pod: str, text: str) -> None:
        """The app in ``pod`` prints a line (time moves one second per line)."""
        second = next(self._clock)
        stamp = f"2026-01-01T00:{second // 60:02d}:{second % 60:02d}.123456789Z"
        self.pod_logs.setdefault(pod, []).append(f"{stamp} {text}")

    def service(self, name: str, namespace: str = "sos-test") -> Obj:
        return self.services[(namespace, name)]

    def revision_names(self, service: str, namespace: str = "sos-test") -> list[str]:
        return sorted(
            name
            for (ns, name), rev in self.revisions.items()
            if ns == namespace
            and rev["metadata"]["labels"]["serving.knative.dev/service"] == service
        )

    # ------------------------------------------------------------------ helpers

    def _raise_if_failing(self, verb: str, name: str | None) -> None:
        key = (verb, name or "")
        if key not in self._failures:  # a name that ends with * is a prefix
            key = next(
                (
                    (v, n)
                    for v, n in self._failures
                    if v == verb and n.endswith("*") and (name or "").startswith(n[:-1])
                ),
                key,
            )
        found = self._failures.get(key)
        if found is None:
            return
        error, left = found
        if left == 1:
            del self._failures[key]
        elif left > 1:
            self._failures[key] = (error, left - 1)
        raise error

    async def _unless_stalled(self, verb: str, name: str | None) -> None:
        def stalled() -> bool:
            return any(
                v == verb and (n == name or (n.endswith("*") and (name or "").startswith(n[:-1])))
                for v, n in self._stalled
            )

        while stalled():
            await self._unstalled.wait()

    @staticmethod
    def _not_found(kind: str, name: str) -> kmock.KubernetesError:
        return kmock.KubernetesError(
            status=404,
            reason="NotFound",
            message=f'{kind}.{GROUP} "{name}" not found',
            details={"name": name, "group": GROUP, "kind": kind},
        )

    @staticmethod
    def _default(template: Obj) -> Obj:
        """What Knative's defaulting webhook adds to a template."""
        template = copy.deepcopy(template)
        spec = template.setdefault("spec", {})
        spec.setdefault("timeoutSeconds", 300)
        spec.setdefault("enableServiceLinks", False)
        for container in spec.get("containers", []):
            container.setdefault("name", "user-container")
            container.setdefault("resources", {})
            probe = container.get("readinessProbe")
            if probe is not None:
                probe.setdefault("successThreshold", 1)
        return template

    @staticmethod
    def _webhook(body: Obj, old: Obj | None) -> list[str]:
        name = body["metadata"]["name"]
        template = body["spec"]["template"]
        revision = template.get("metadata", {}).get("name", "")
        problems = []
        if revision and not revision.startswith(name + "-"):
            problems.append(f'spec.template.metadata.name: "{revision}" must have prefix "{name}-"')
        traffic = body["spec"].get("traffic", [])
        total = sum(t.get("percent", 0) for t in traffic)
        if traffic and total != 100:
            problems.append(f"spec.traffic: Traffic targets sum to {total}, want 100")
        tags = [t["tag"] for t in traffic if "tag" in t]
        if len(tags) != len(set(tags)):
            problems.append("spec.traffic: Multiple definitions for tag")
        if old is not None:
            before = old["spec"]["template"]
            if before.get("metadata", {}).get("name") == revision and before != template:
                problems.append(
                    "spec.template.metadata.name: Saw the following changes without a name "
                    "change (-old +new)"
                )
        return problems

    # ------------------------------------------------------------------ handlers

    def _namespace(self, request: kmock.Request) -> Obj:
        if request.headers.get("Content-Type") != APPLY or not request.params.get("fieldManager"):
            raise kmock.KubernetesError(
                status=400, reason="BadRequest", message="expected server-side apply"
            )
        body = copy.deepcopy(request.data)
        self.namespaces[body["metadata"]["name"]] = body
        return body

    async def _apply_job(self, request: kmock.Request) -> Obj:
        # as the API server, it goes on with a request it took when its client goes away
        return await asyncio.shield(self._apply_job_landing(request))

    async def _apply_job_landing(self, request: kmock.Request) -> Obj:
        await self._unless_stalled("apply", request.name)
        self._raise_if_failing("apply", request.name)
        body = self._apply_core(request, self.jobs)
        if request.params.get("fieldValidation") != "Strict":
            raise kmock.KubernetesError(
                status=400, reason="BadRequest", message="expected strict field validation"
            )
        body.setdefault("metadata", {})["uid"] = f"uid-{next(self._uids)}"
        body["status"] = {"active": 1, "startTime": "2026-01-01T00:00:00Z"}
        if self.kubelet is not None:
            self.kubelet.start(body)
        return body

    async def _delete_job(self, request: kmock.Request) -> Obj:
        await self._unless_stalled("delete", request.name)
        self._raise_if_failing("delete", request.name)
        key = (request.namespace or "default", request.name or "")
        if self.jobs.pop(key, None) is None:
            raise self._not_found("jobs.batch", key[1])
        if self.kubelet is not None:
            self.kubelet.stop(*key)
        return {"kind": "Status", "apiVersion": "v1", "status": "Success"}

    def _delete_secret(self, request: kmock.Request) -> Obj:
        self._raise_if_failing("delete secret", request.name)
        key = (request.namespace or "default", request.name or "")
        if self.secrets.pop(key, None) is None:
            raise self._not_found("secrets", key[1])
        return {"kind": "Status", "apiVersion": "v1", "status": "Success"}

    async def _get_job(self, request: kmock.Request) -> Obj:
        await self._unless_stalled("get", request.name)
        self._raise_if_failing("get", request.name)
        job = self.jobs.get((request.namespace or "default", request.name or ""))
        if job is None:
            raise self._not_found("jobs.batch", request.name or "")
        return job

    def _apply_secret(self, request: kmock.Request) -> Obj:
        self._raise_if_failing("apply secret", request.name)
        return self._apply_core(request, self.secrets)

    def _apply_config_map(self, request: kmock.Request) -> Obj:
        return self._apply_core(request, self.config_maps)

    @staticmethod
    def _apply_core(request: kmock.Request, store: dict[tuple[str, str], Obj]) -> Obj:
        if request.headers.get("Content-Type") != APPLY or not request.params.get("fieldManager"):
            raise kmock.KubernetesError(
                status=400, reason="BadRequest", message="expected server-side apply"
            )
        body = copy.deepcopy(request.data)
        store[(request.namespace or "default", request.name or "")] = body
        return body

    def _apply(self, request: kmock.Request) -> Obj:
        namespace, name = request.namespace or "default", request.name or ""
        self._raise_if_failing("apply", name)
        if request.headers.get("Content-Type") != APPLY:
            raise kmock.KubernetesError(
                status=415, reason="UnsupportedMediaType", message="expected server-side apply"
            )
        if not request.params.get("fieldManager"):
            raise kmock.KubernetesError(
                status=400, reason="BadRequest", message="fieldManager: Required value"
            )
        body = copy.deepcopy(request.data)
        errors = schema_errors(body)
        if errors:
            raise kmock.KubernetesError(
                status=422,
                reason="Invalid",
                message=f'Service.{GROUP} "{name}" is invalid: {"; ".join(errors)}',
                details={
                    "name": name,
                    "kind": "Service",
                    "causes": [{"reason": "FieldValueInvalid", "message": e} for e in errors],
                },
            )
        old = self.services.get((namespace, name))
        body["spec"]["template"] = self._default(body["spec"]["template"])
        problems = self._webhook(body, old)
        if problems:
            raise kmock.KubernetesError(
                status=400,
                reason="BadRequest",
                message='admission webhook "validation.webhook.serving.knative.dev" denied the '
                "request: validation failed: " + "; ".join(problems),
                details={"name": name},
            )
        self.applies.append(copy.deepcopy(body))
        self.apply_params.append(dict(request.params))
        if old is None:
            body["metadata"].update(
                namespace=namespace,
                uid=f"uid-{next(self._uids)}",
                generation=1,
                creationTimestamp="2026-01-01T00:00:00Z",
            )
            body["status"] = {}
        else:
            changed = old["spec"] != body["spec"]
            metadata = {**old["metadata"], **body["metadata"]}
            metadata["generation"] = old["metadata"]["generation"] + int(changed)
            body = {**body, "metadata": metadata, "status": old.get("status", {})}
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        body["metadata"]["managedFields"] = [
            {"manager": request.params["fieldManager"], "operation": "Apply"}
        ]
        self.services[(namespace, name)] = body
        self._reconcile(namespace, name)
        return body

    def _get_service(self, request: kmock.Request) -> Obj:
        self.reads += 1
        self._raise_if_failing("get", request.name)
        key = (request.namespace or "default", request.name or "")
        if key not in self.services:
            raise self._not_found("services", key[1])
        return self.services[key]

    def _list_services(self, request: kmock.Request) -> Obj:
        return self._list(request, self.services, "ServiceList")

    def _delete_service(self, request: kmock.Request) -> Obj:
        namespace, name = request.namespace or "default", request.name or ""
        self._raise_if_failing("delete", name)
        if (namespace, name) not in self.services:
            raise self._not_found("services", name)
        del self.services[(namespace, name)]
        for key in [k for k in self.revisions if k[0] == namespace]:
            if self.revisions[key]["metadata"]["labels"]["serving.knative.dev/service"] == name:
                del self.revisions[key]  # owned by the Service: garbage-collected with it
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Success",
            "details": {"name": name},
        }

    def _list_revisions(self, request: kmock.Request) -> Obj:
        return self._list(request, self.revisions, "RevisionList")

    def _list(self, request: kmock.Request, store: dict[tuple[str, str], Obj], kind: str) -> Obj:
        self.reads += kind != "PodList"
        self._raise_if_failing("list", kind)
        selector = request.params.get("labelSelector")
        items = [
            obj
            for (ns, _), obj in sorted(store.items())
            # a request without a namespace lists the whole cluster
            if request.namespace in (None, ns)
            and _selector_matches(selector, obj["metadata"]["labels"])
        ]
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "items": items}

    def _list_pods(self, request: kmock.Request) -> Obj:
        return self._list(request, self.pods, "PodList")

    def _pod_log(self, request: kmock.Request) -> str | AsyncIterator[bytes]:
        key = (request.namespace or "default", request.name or "")
        if key not in self.pods:
            raise kmock.KubernetesError(status=404, reason="NotFound", message="pod not found")
        spec = self.pods[key].get("spec") or {"containers": [{"name": "user-container"}]}
        container = request.params.get("container")
        if container not in [c["name"] for c in spec["containers"]]:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message="container?")
        if key[1] not in self.pod_logs:
            raise kmock.KubernetesError(
                status=400,
                reason="BadRequest",
                message=f'container "{container}" in pod "{key[1]}" is waiting to start',
            )
        if request.params.get("follow") == "true":
            return self._follow_log(key[1])
        lines = self.pod_logs[key[1]]
        if "tailLines" in request.params:
            lines = lines[-int(request.params["tailLines"]) :]
        return "".join(line + "\n" for line in lines)

    async def _follow_log(self, pod: str) -> AsyncIterator[bytes]:
        """The log as it is written, until the container ends (``follow=true``)."""
        sent = 0
        while True:
            ended = self.pod_ended.get(pod)
            lines = self.pod_logs[pod]
            if sent < len(lines):
                yield "".join(line + "\n" for line in lines[sent:]).encode()
                sent = len(lines)
                continue
            if ended is None or ended.is_set():
                return
            await asyncio.sleep(0.02)

    def _get_revision(self, request: kmock.Request) -> Obj:
        key = (request.namespace or "default", request.name or "")
        if key not in self.revisions:
            raise self._not_found("revisions", key[1])
        return self.revisions[key]

    # ------------------------------------------------------------------ the "controllers"

    def _reconcile(self, namespace: str, name: str) -> None:
        if not self.running or (namespace, name) not in self.services:
            return
        service = self.services[(namespace, name)]
        template = service["spec"]["template"]
        revision_name = template["metadata"]["name"]
        status = service.setdefault("status", {})
        config_ok, config_reason, config_message = True, None, None
        existing = self.revisions.get((namespace, revision_name))
        if existing is None:
            self.revisions[(namespace, revision_name)] = self._make_revision(
                namespace, name, service["metadata"]["generation"], template
            )
        elif existing["spec"] != template["spec"]:
            config_ok, config_reason = False, "RevisionFailed"
            config_message = f'revisions.{GROUP} "{revision_name}" already exists'
        revision = self.revisions[(namespace, revision_name)]
        revision_ready = revision["status"]["conditions"][0]["status"] == "True"
        if config_ok and not revision_ready:
            config_ok, config_reason = False, "RevisionFailed"
            config_message = f'Revision "{revision_name}" failed with message: container exited.'
        status["latestCreatedRevisionName"] = revision_name
        if revision_ready:
            status["latestReadyRevisionName"] = revision_name

        traffic = service["spec"].get("traffic", [])
        missing = [
            t["revisionName"]
            for t in traffic
            if (namespace, t["revisionName"]) not in self.revisions
        ]
        routes_ok = not missing
        routable = {t["revisionName"] for t in traffic if t.get("percent") or t.get("tag")}
        for (ns, rev_name), rev in self.revisions.items():
            if ns == namespace and rev["metadata"]["labels"]["serving.knative.dev/service"] == name:
                scale = (
                    1
                    if rev_name in routable and rev["status"]["conditions"][0]["status"] == "True"
                    else 0
                )
                rev["status"]["actualReplicas"] = rev["status"]["desiredReplicas"] = scale
                pod = (ns, f"{rev_name}-deployment-7d9f8")
                if scale and pod not in self.pods:
                    labels = {
                        "serving.knative.dev/service": name,
                        "serving.knative.dev/revision": rev_name,
                    }
                    self.pods[pod] = {
                        "metadata": {"name": pod[1], "namespace": ns, "labels": labels}
                    }
                elif not scale:
                    self.pods.pop(pod, None)
        host = f"{name}.{namespace}.{self.domain}"
        status["observedGeneration"] = service["metadata"]["generation"]
        status["url"] = f"http://{host}"
        status["address"] = {"url": f"http://{name}.{namespace}.svc.cluster.local"}
        if routes_ok:
            status["traffic"] = [
                {**t, **({"url": f"http://{t['tag']}-{host}"} if t.get("tag") else {})}
                for t in traffic
            ]
        routes = _condition(
            "RoutesReady",
            routes_ok,
            None if routes_ok else "RevisionMissing",
            None if routes_ok else f'Revision "{missing[0]}" referenced in traffic not found.',
        )
        config = _condition("ConfigurationsReady", config_ok, config_reason, config_message)
        failing = config if not config_ok else routes
        ready = _condition(
            "Ready", config_ok and routes_ok, failing.get("reason"), failing.get("message")
        )
        status["conditions"] = [config, ready, routes]
        problems = schema_errors({**service, "status": status})
        assert not problems, f"the stand-in wrote a status Knative's schema refuses: {problems}"

    def _make_revision(self, namespace: str, service: str, generation: int, template: Obj) -> Obj:
        name = template["metadata"]["name"]
        image = template["spec"]["containers"][0]["image"]
        failed = image in self.failing_images
        labels = dict(template["metadata"].get("labels", {}))
        labels.update(
            {
                "serving.knative.dev/service": service,
                "serving.knative.dev/configuration": service,
                "serving.knative.dev/configurationGeneration": str(generation),
                "serving.knative.dev/routingState": "active",
            }
        )
        annotations = dict(template["metadata"].get("annotations", {}))
        annotations["serving.knative.dev/creator"] = "system:serviceaccount:sos:sos"
        annotations["serving.knative.dev/routingStateModified"] = "2026-01-01T00:00:00Z"
        ready = (
            _condition("Ready", False, "ExitCode1", "Container failed with: exit status 1")
            if failed
            else _condition("Ready", True)
        )
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Revision",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [{"kind": "Configuration", "name": service, "controller": True}],
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {
                "observedGeneration": 1,
                "conditions": [ready, _condition("ContainerHealthy", not failed)],
                "actualReplicas": 0,
                "desiredReplicas": 0,
            },
        }


NAMESPACE = "sos-test"


def write_kubeconfig(path: Path, server: str, namespace: str = NAMESPACE) -> Path:
    """A kubeconfig whose current context is the stand-in at ``server``, in ``namespace``."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "standin", "cluster": {"server": server}}],
                "users": [{"name": "sos", "user": {"token": "test-token"}}],
                "contexts": [
                    {
                        "name": "test",
                        "context": {"cluster": "standin", "user": "sos", "namespace": namespace},
                    }
                ],
            }
        )
    )
    return path
