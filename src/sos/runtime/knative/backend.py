"""The Knative backend: SOS services as ``serving.knative.dev/v1`` Services on Kubernetes.

It speaks to the cluster with the official ``kubernetes`` client (its asyncio flavour,
``kubernetes.aio``, so the server's event loop never blocks): server-side apply with field
manager ``sos`` (forced: SOS is the source of truth for the fields it sets; fields it does
not set keep their owners), strict field validation, configuration from a kubeconfig file
or from the pod's service account. ``plan.plan_apply`` decides what to apply;
``status.observed_service`` reads the result back.

Errors from the cluster become SOS errors naming the cause: 403 ->
``PermissionDeniedError``, 409 -> ``ConflictError``, 400/422 -> ``ValidationError``,
anything else (and an unreachable API server) -> ``BackendError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes.aio import client as k8s
from kubernetes.aio import config as k8s_config

from sos.build.runner import BuildRunner
from sos.errors import (
    BackendError,
    ConflictError,
    PermissionDeniedError,
    SOSError,
    ValidationError,
)
from sos.models import TrafficRoute
from sos.runtime.base import Backend, DesiredService, LogLine, ObservedService
from sos.runtime.knative.plan import (
    ClusterState,
    is_applied,
    plan_apply,
    template_from_revision,
)
from sos.runtime.knative.render import (
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    TEAM_LABEL,
    Manifest,
    render_config_map,
    render_secret,
)
from sos.runtime.knative.settings import KnativeSettings
from sos.runtime.knative.status import observed_service
from sos.runtime.registry import BackendContext

__all__ = ["BACKEND_OPTIONS", "FIELD_MANAGER", "KnativeBackend", "create_backend", "map_api_error"]

logger = logging.getLogger(__name__)

GROUP, VERSION = "serving.knative.dev", "v1"
FIELD_MANAGER = "sos"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
RBAC_HINT = (
    "SOS's Kubernetes identity needs get, list, create, patch and delete on "
    "services.serving.knative.dev, get and list on revisions.serving.knative.dev (and on "
    "pods and pods/log for sos logs) in that namespace (docs/sos/knative.md has the Role)"
)


def _status_body(exc: k8s.ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _pod_namespace() -> str | None:
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    return None


def _render_key(desired: DesiredService) -> str:
    """What rendering depends on, as text: equal keys render the same manifests (status,
    times and resource versions, which the store updates all the time, are left out)."""
    revisions = [[rev.id, rev.spec().model_dump(mode="json")] for rev in desired.revisions]
    return json.dumps(
        [
            desired.service.name,
            desired.service.team,
            revisions,
            desired.traffic.model_dump(mode="json", exclude={"resource_version"})
            if desired.traffic
            else None,
            {k: v.model_dump(mode="json") for k, v in sorted(desired.artifacts.items())},
            # a rotated secret is applied again (its digest only: keys are kept in memory)
            {k: hashlib.sha256(v.encode()).hexdigest() for k, v in desired.secrets.items()},
        ],
        sort_keys=True,
    )


def map_api_error(exc: k8s.ApiException, action: str) -> SOSError:
    """The SOS error for a Kubernetes API error met while doing ``action`` (e.g. 'apply
    Knative Service "recs" in namespace "ml"')."""
    body = _status_body(exc)
    message = str(body.get("message") or exc.reason or "no message").strip()
    causes = [
        f"{cause.get('field')}: {cause.get('message')}" if cause.get("field") else cause["message"]
        for cause in (body.get("details") or {}).get("causes") or []
        if isinstance(cause, dict) and cause.get("message")
    ]
    details: dict[str, Any] = {
        "kubernetes_status": exc.status,
        "kubernetes_reason": body.get("reason") or exc.reason,
    }
    if causes:
        details["causes"] = causes
    cause_text = f" ({'; '.join(causes)})" if causes and "; ".join(causes) not in message else ""
    text = f"Kubernetes refused to {action}: {message}{cause_text}"
    if exc.status == 403:
        return PermissionDeniedError(f"{text}. {RBAC_HINT}", details=details)
    if exc.status == 409:
        return ConflictError(
            f"{text}. Another change to the same object got there first; the next "
            "reconcile retries it",
            details=details,
        )
    if exc.status in (400, 422):
        return ValidationError(text, details=details)
    if exc.status == 401:
        return BackendError(
            f"Kubernetes did not accept SOS's credentials while trying to {action}: {message}; "
            "check the kubeconfig (SOS_KNATIVE_KUBECONFIG) or the pod's service account",
            details=details,
        )
    if exc.status == 404:
        return BackendError(
            f"Kubernetes could not {action}: {message}. Is Knative Serving installed "
            f"({GROUP}/{VERSION}) and does the namespace exist?",
            details=details,
        )
    return BackendError(f"{text} (HTTP {exc.status})", details=details)


class KnativeBackend(Backend):
    """Runs SOS revisions as Knative Revisions of one Knative Service per SOS service."""

    name = "knative"
    isolation = (
        "each instance is a pod of the cluster, as the cluster isolates pods (runs as a "
        "non-root user with no privilege escalation and the runtime default seccomp profile)"
    )

    def __init__(
        self,
        settings: KnativeSettings | None = None,
        *,
        api_client: k8s.ApiClient | None = None,
        in_cluster: bool | None = None,
        revision_timeout: float = 120.0,
        poll_interval: float = 0.5,
        request_timeout: float = 30.0,
        log_poll_interval: float = 2.0,
        min_interval: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or KnativeSettings.from_env()
        self._api_client = api_client
        self._owns_client = api_client is None
        self._in_cluster = in_cluster
        self._revision_timeout = revision_timeout
        self._poll_interval = poll_interval
        self._request_timeout = request_timeout
        self._log_poll_interval = log_poll_interval
        self._sleep = sleep
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._min_interval = min_interval
        #: service -> (when, what was applied): an unchanged apply within min_interval is a no-op
        self._applied: dict[str, tuple[float, str]] = {}
        #: service -> its namespace, when teams get their own (learnt from apply and from
        #: listing services across namespaces after a restart)
        self._namespaces: dict[str, str] = {}
        #: team namespaces known to exist
        self._ensured: set[str] = set()
        #: service -> (when read, Knative Service or None, its Revisions)
        self._snapshots: dict[str, tuple[float, dict[str, Any] | None, list[dict[str, Any]]]] = {}
        #: the event loop the API client lives on (remote builds call it from threads)
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def namespace(self) -> str:
        return self.settings.namespace or "default"

    def check_traffic(self, route: TrafficRoute) -> None:
        """Knative Serving splits by percentage only: it cannot keep a user on one revision
        (knative/serving#8160) nor mirror requests, so those are refused, never accepted
        and left undone."""
        if route.split_by:
            raise ValidationError(
                f"split_by {route.split_by}: Knative Serving routes each request by "
                "percentage only and cannot keep a key on one revision (knative/serving#8160); "
                "send the route without split_by, or run sticky A/B tests on the local runtime",
                details={"field": "split_by"},
            )
        if route.shadow:
            raise ValidationError(
                "shadow: Knative Serving cannot mirror requests to a revision; send the route "
                "without shadow, or compare revisions with shadow traffic on the local runtime",
                details={"field": "shadow"},
            )

    async def start(self) -> None:
        """Load the cluster configuration (kubeconfig or in-cluster) and pick the namespace."""
        self._loop = asyncio.get_running_loop()
        if self._api_client is not None:
            return
        configuration = k8s.Configuration()
        in_cluster = self._in_cluster
        if in_cluster is None:
            in_cluster = self.settings.kubeconfig is None and "KUBERNETES_SERVICE_HOST" in (
                os.environ
            )
        namespace = self.settings.namespace
        try:
            if in_cluster:
                k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
                namespace = namespace or await asyncio.to_thread(_pod_namespace)
            else:
                loader = await k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=self.settings.kubeconfig,
                    context=self.settings.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
                context = (getattr(loader, "current_context", None) or {}).get("context") or {}
                namespace = namespace or context.get("namespace")
        except (k8s_config.ConfigException, OSError, ValueError) as exc:
            where = "the pod's service account" if in_cluster else "the kubeconfig"
            raise BackendError(
                f"the Knative backend cannot load {where}: {exc}. Set SOS_KNATIVE_KUBECONFIG "
                "(or KUBECONFIG) to a kubeconfig file, or run the SOS server in the cluster"
            ) from exc
        self.settings = self.settings.model_copy(update={"namespace": namespace or "default"})
        self._api_client = k8s.ApiClient(configuration)
        if self.settings.artifact_url is None:
            logger.warning(
                "Knative backend: no artifact URL, so pods cannot download artifacts; set "
                "SOS_KNATIVE_ARTIFACT_URL to the SOS server's address as pods reach it"
            )
        logger.info("Knative backend: namespace %s at %s", self.namespace, configuration.host)

    async def close(self) -> None:
        if self._api_client is not None and self._owns_client:
            await self._api_client.close()  # type: ignore[no-untyped-call]
            self._api_client = None

    def build_runner(self, root: Path) -> BuildRunner:
        """Remote builds run as Kubernetes Jobs on the curated runtime image."""
        from sos.runtime.knative.builds import KnativeBuildRunner

        return KnativeBuildRunner(self, root)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop of the API client (set by ``start``)."""
        if self._loop is None:
            raise BackendError("the Knative backend is not started: call start() first")
        return self._loop

    # ------------------------------------------------------------------ API calls

    def api_client(self) -> k8s.ApiClient:
        """The official client's ``ApiClient`` (on ``loop``)."""
        return self._client()

    @property
    def request_timeout(self) -> float:
        """How long one API call may take (seconds) before it counts as unanswered."""
        return self._request_timeout

    async def guard(
        self,
        action: str,
        call: Awaitable[Any],
        *,
        missing: Callable[[k8s.ApiException], bool] = lambda _: False,
    ) -> Any:
        """Await one API call; errors become SOS errors naming ``action``, ``missing`` ones
        None."""
        return await self._guard(action, call, missing=missing)

    def _client(self) -> k8s.ApiClient:
        if self._api_client is None:
            raise BackendError("the Knative backend is not started: call start() first")
        return self._api_client

    def _api(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self._client())

    async def _call(
        self,
        action: str,
        method: str,
        plural: str,
        *args: Any,
        missing_ok: str | None = None,
        namespace: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``CustomObjectsApi.<method>`` for ``plural`` of Knative Serving in
        ``namespace`` (default: the backend's); a 404 for ``missing_ok`` returns None."""

        def missing(exc: k8s.ApiException) -> bool:
            details = _status_body(exc).get("details") or {}
            return bool(missing_ok) and exc.status == 404 and details.get("name") == missing_ok

        call = getattr(self._api(), method)
        return await self._guard(
            action,
            call(
                GROUP,
                VERSION,
                namespace or self.namespace,
                plural,
                *args,
                _request_timeout=self._request_timeout,
                **kwargs,
            ),
            missing=missing,
        )

    async def _guard(
        self,
        action: str,
        call: Awaitable[Any],
        *,
        missing: Callable[[k8s.ApiException], bool] = lambda _: False,
    ) -> Any:
        """Await one API call; errors become SOS errors, and ``missing`` ones None."""
        try:
            return await call
        except k8s.ApiException as exc:
            if missing(exc):
                return None
            raise map_api_error(exc, action) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            host = self._api_client.configuration.host if self._api_client else "?"
            raise BackendError(
                f"cannot reach the Kubernetes API at {host} to {action}: "
                f"{exc or type(exc).__name__}"
            ) from None

    def _ns(self, service: str) -> str:
        """The namespace of ``service``."""
        return self._namespaces.get(service) or self.namespace

    def _where(self, name: str, service: str | None = None) -> str:
        return f'"{name}" in namespace "{self._ns(service or name)}"'

    async def _get_service(self, name: str) -> dict[str, Any] | None:
        result = await self._call(
            f"read Knative Service {self._where(name)}",
            "get_namespaced_custom_object",
            "services",
            name,
            missing_ok=name,
            namespace=self._ns(name),
        )
        return result if isinstance(result, dict) else None

    async def _list(self, plural: str, selector: str, namespace: str) -> list[dict[str, Any]]:
        result = await self._call(
            f"list {plural}.{GROUP} in namespace {namespace!r}",
            "list_namespaced_custom_object",
            plural,
            label_selector=selector,
            namespace=namespace,
        )
        items = result.get("items") if isinstance(result, dict) else None
        return [item for item in items or [] if isinstance(item, dict)]

    async def _revisions(self, name: str) -> list[dict[str, Any]]:
        return await self._list("revisions", f"serving.knative.dev/service={name}", self._ns(name))

    async def _ensure_namespace(self, namespace: str, team: str) -> None:
        """Make a team's namespace exist (server-side apply: idempotent; once per process)."""
        if namespace in self._ensured:
            return
        core = k8s.CoreV1Api(self._client())
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {MANAGED_BY_LABEL: "sos", TEAM_LABEL: team}},
        }
        await self._guard(
            f"apply namespace {namespace!r} of team {team!r}",
            core.patch_namespace(
                namespace,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _request_timeout=self._request_timeout,
            ),
        )
        self._ensured.add(namespace)

    async def _apply_manifest(self, manifest: Manifest) -> None:
        name = manifest["metadata"]["name"]
        template = manifest["spec"]["template"]["metadata"]["name"]
        await self._call(
            f"apply Knative Service {self._where(name)} (revision {template})",
            "patch_namespaced_custom_object",
            "services",
            name,
            manifest,
            field_manager=FIELD_MANAGER,
            force=True,
            field_validation="Strict",
            _content_type="application/apply-patch+yaml",
            namespace=self._ns(name),
        )

    async def _apply_core(self, manifest: Manifest, service: str, kind: str) -> None:
        """Create or update a Secret or ConfigMap (``kind``: secret, config_map) in
        ``service``'s namespace, with server-side apply like services."""
        name = manifest["metadata"]["name"]
        core = k8s.CoreV1Api(self._client())
        patch = getattr(core, f"patch_namespaced_{kind}")
        await self._guard(
            f"apply {manifest['kind']} {self._where(name, service)}",
            patch(
                name,
                self._ns(service),
                manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _request_timeout=self._request_timeout,
            ),
        )

    async def _wait_created(self, name: str, revision: str) -> None:
        """Wait until Knative has created Revision ``revision`` (or time out clearly)."""
        deadline = self._clock() + self._revision_timeout
        while True:
            if any(rev["metadata"].get("name") == revision for rev in await self._revisions(name)):
                return
            if self._clock() >= deadline:
                service = await self._get_service(name) or {}
                why = ""
                for condition in (service.get("status") or {}).get("conditions") or []:
                    if condition.get("type") == "ConfigurationsReady" and condition.get("message"):
                        why = f" Knative says: {condition['message']}"
                raise BackendError(
                    f"Knative did not create revision {revision} of {name!r} within "
                    f"{self._revision_timeout:g}s.{why} Is the Knative Serving controller "
                    f"running? `kubectl -n {self._ns(name)} describe configuration {name}` "
                    "shows why; the next reconcile continues from here"
                )
            await self._sleep(self._poll_interval)

    # ------------------------------------------------------------------ Backend

    async def apply(self, desired: DesiredService) -> None:
        """Drive Knative towards ``desired`` (see ``plan.py``).

        The reconciler calls this (and ``observe``) every fraction of a second while a
        revision deploys; on Kubernetes that takes seconds to minutes (image pulls), so an
        unchanged ``desired`` is checked against the cluster at most every
        ``min_interval`` seconds, and ``observe`` reuses what that check read."""
        name = desired.service.name
        if desired.traffic is None or not desired.revisions:
            logger.debug("service %s has no revision or traffic yet: nothing to apply", name)
            return
        key = _render_key(desired)
        lock = self._locks.setdefault(name, asyncio.Lock())
        team_ns = self.settings.namespace_of(desired.service.team)
        async with lock:
            if team_ns is not None:  # each team in a namespace of its own
                await self._ensure_namespace(team_ns, desired.service.team)
                self._namespaces[name] = team_ns
            last = self._applied.get(name)
            if last is not None and last[1] == key and self._clock() - last[0] < self._min_interval:
                return
            self._applied.pop(name, None)
            read_at = self._clock()
            current = await self._get_service(name)
            existing = await self._revisions(name) if current is not None else []
            cluster = ClusterState(
                template=((current or {}).get("spec") or {}).get("template"),
                revisions={
                    rev["metadata"]["name"]: template_from_revision(rev) for rev in existing
                },
            )
            for secret, value in sorted(desired.secrets.items()):
                manifest = render_secret(desired.service.team, secret, value)
                await self._apply_core(manifest, name, "secret")
            for revision in desired.revisions:
                if revision.files:
                    manifest = render_config_map(revision, desired.service.team)
                    await self._apply_core(manifest, name, "config_map")
            steps = plan_apply(desired, self.settings, cluster)
            if len(steps) == 1 and is_applied(steps[0].manifest, current):
                # nothing to change: spare the API server a write; observe may reuse the read
                self._snapshots[name] = (read_at, current, existing)
            else:
                self._snapshots.pop(name, None)
                for step in steps:
                    await self._apply_manifest(step.manifest)
                    if step.wait_for is not None:
                        logger.info("recreating revision %s of %s in Knative", step.wait_for, name)
                        await self._wait_created(name, step.wait_for)
            self._applied[name] = (self._clock(), key)

    async def observe(self, name: str) -> ObservedService | None:
        snapshot = self._snapshots.get(name)
        if snapshot is not None and self._clock() - snapshot[0] < self._min_interval:
            _, service, revisions = snapshot
        else:
            read_at = self._clock()
            service = await self._get_service(name)
            revisions = await self._revisions(name) if service is not None else []
            self._snapshots[name] = (read_at, service, revisions)
        if service is None:
            return None
        return observed_service(service, revisions, domain=self.settings.domain)

    async def delete(self, name: str) -> None:
        self._applied.pop(name, None)
        self._snapshots.pop(name, None)
        await self._call(
            f"delete Knative Service {self._where(name)}",
            "delete_namespaced_custom_object",
            "services",
            name,
            missing_ok=name,
            namespace=self._ns(name),
        )
        self._locks.pop(name, None)

    async def logs(
        self,
        service: str,
        revision: str | None = None,
        *,
        tail: int = 100,
        follow: bool = False,
    ) -> AsyncIterator[LogLine]:
        """The app's output in the service's pods (``user-container``; Kubernetes does not
        keep stdout and stderr apart), oldest first; with ``follow``, polled every few
        seconds for new lines. Needs get/list on pods and get on pods/log."""
        selector = f"serving.knative.dev/service={service}"
        if revision:
            selector += f",serving.knative.dev/revision={revision}"
        last: dict[str, datetime] = {}
        first = True
        while True:
            batch = await self._log_batch(service, selector, last, tail if first else None)
            for line in batch[-tail:] if first else batch:
                yield line
            if not follow:
                return
            first = False
            await self._sleep(self._log_poll_interval)

    async def _log_batch(
        self, service: str, selector: str, last: dict[str, datetime], tail: int | None
    ) -> list[LogLine]:
        core = k8s.CoreV1Api(self._client())
        pods = await self._guard(
            f"list the pods of {self._where(service)}",
            core.list_namespaced_pod(
                self._ns(service), label_selector=selector, _request_timeout=self._request_timeout
            ),
        )
        lines: list[LogLine] = []
        for pod in pods.items or []:
            metadata = pod.metadata or k8s.V1ObjectMeta()
            name = str(metadata.name)
            revision = str((metadata.labels or {}).get("serving.knative.dev/revision", ""))
            text = await self._guard(
                f"read the logs of pod {name!r}",
                core.read_namespaced_pod_log(
                    name,
                    self._ns(service),
                    container="user-container",
                    timestamps=True,
                    tail_lines=tail,
                    since_seconds=None if name not in last else int(self._log_poll_interval) + 10,
                    _request_timeout=self._request_timeout,
                ),
                missing=lambda exc: exc.status in (400, 404),  # not started yet, or gone
            )
            for raw in str(text or "").splitlines():
                stamp, _, message = raw.partition(" ")
                try:
                    at = datetime.fromisoformat(stamp)
                except ValueError:
                    continue
                if name in last and at <= last[name]:
                    continue
                last[name] = at
                lines.append(LogLine(at, service, revision, name, "stdout", message))
        lines.sort(key=lambda line: line.at)
        return lines

    async def list_services(self) -> list[str]:
        selector = f"{MANAGED_BY_LABEL}=sos,{INSTANCE_LABEL}={self.settings.instance}"
        if self.settings.team_namespaces is None:
            services = await self._list("services", selector, self.namespace)
            return sorted(str(svc["metadata"]["name"]) for svc in services)
        # teams in namespaces of their own: one list across the cluster, which also tells
        # each service's namespace (after a restart, before anything was applied)
        result = await self._guard(
            f"list services.{GROUP} of every team namespace",
            self._api().list_cluster_custom_object(
                GROUP,
                VERSION,
                "services",
                label_selector=selector,
                _request_timeout=self._request_timeout,
            ),
        )
        names = []
        for svc in (result or {}).get("items") or []:
            meta = svc.get("metadata") or {}
            namespace = str(meta.get("namespace") or "")
            if self.settings.team_namespaces and namespace.startswith(
                self.settings.team_namespaces
            ):
                self._namespaces[str(meta["name"])] = namespace
                names.append(str(meta["name"]))
        return sorted(names)


#: ``sos server --backend knative --backend-opt KEY=VALUE`` keys (env vars in settings.py)
BACKEND_OPTIONS = tuple(KnativeSettings.keys())


def create_backend(context: BackendContext) -> KnativeBackend:
    """The registry's factory (``sos.runtime.registry``): ``KnativeSettings`` from
    ``--backend-opt``, the rest from the ``SOS_KNATIVE_*`` / ``SOS_IMAGE_REGISTRY``
    environment variables."""
    return KnativeBackend(KnativeSettings.parse(context.options))
