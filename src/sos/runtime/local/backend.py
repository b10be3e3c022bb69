"""``LocalBackend``: runs revisions as processes on this machine behind one shared router.

``apply`` stores the desired state of a service, computes the plan (``plan.py``) and
carries it out; a background loop then keeps reality there: the supervisor starts, probes,
replaces and stops instances, the autoscaler turns the router's concurrency into wanted
instance counts once a second, and every change of ready instances or traffic is
published to the router as a new routing table.

``close()`` leaves instances running so that a restarted server re-adopts them
(``start()``); with ``stop_on_close=True`` it stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Mapping
from itertools import accumulate
from pathlib import Path

from sos.errors import ValidationError
from sos.launch import launch_command
from sos.models import (
    ArtifactMetadata,
    Instances,
    RevisionSpec,
    ShadowComparison,
    TrafficRoute,
    revision_parts,
)
from sos.runtime.base import (
    Backend,
    DesiredService,
    LogLine,
    ObservedRevision,
    ObservedService,
    RevisionMetricsSample,
)
from sos.runtime.local.autoscaler import Autoscaler
from sos.runtime.local.ingress import (
    Endpoint,
    Ingress,
    RevisionTarget,
    RoutingTable,
    ServiceRoute,
    create_ingress,
)
from sos.runtime.local.limits import DEFAULT_MEMORY, Limiter
from sos.runtime.local.logs import LogStore
from sos.runtime.local.metrics import BUCKETS
from sos.runtime.local.network import Network, network_problem
from sos.runtime.local.options import LocalOptions
from sos.runtime.local.plan import Current, Deploy, Fail, Retire, Scale, SetRoute, plan
from sos.runtime.local.prepare import Preparer, Step
from sos.runtime.local.sandbox import (
    DEFAULT_PROCESSES,
    DEFAULT_TMP_BYTES,
    Sandbox,
    sandbox_problem,
)
from sos.runtime.local.supervisor import (
    RevisionRuntime,
    Supervisor,
    inherited_env,
    runtime_for,
)
from sos.runtime.registry import ArtifactPath, BackendContext

__all__ = ["LocalBackend", "create_backend"]

log = logging.getLogger(__name__)


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self,
        data_dir: Path,
        *,
        artifact_path: ArtifactPath | None = None,
        router_host: str = "127.0.0.1",
        router_port: int = 8080,
        domain: str = "localhost",
        activation_timeout: float = 30.0,
        request_timeout: float = 300.0,
        stop_on_close: bool = False,
        data_path: str = "python",
        sandbox: str = "bubblewrap",
        sandbox_tmp_bytes: int = DEFAULT_TMP_BYTES,
        sandbox_processes: int = DEFAULT_PROCESSES,
        network: str | None = None,
        router_metrics_token: str | None = None,
        default_memory: str | None = DEFAULT_MEMORY,
        tick_seconds: float = 0.1,
        autoscale_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.data_dir = data_dir
        self.artifact_path = artifact_path
        self.stop_on_close = stop_on_close
        self.tick_seconds = tick_seconds
        self.autoscale_seconds = autoscale_seconds
        self.clock = clock
        runtime_dir = data_dir / "runtime"
        self.log_store = LogStore(runtime_dir / "logs")
        #: how instances are isolated, and the clean runtime they run on (``sandbox.py``)
        self.sandbox = Sandbox(
            runtime_dir, sandbox, tmp_bytes=sandbox_tmp_bytes, processes=sandbox_processes
        )
        self.preparer = Preparer(self.log_store)
        #: memory and CPU limits, and the memory limit of revisions that set none
        self.limiter = Limiter(default_memory=default_memory)
        #: each instance's network: its own (private, the sandbox's default) or the host's
        self.network = Network(
            runtime_dir, network or ("private" if sandbox == "bubblewrap" else "host")
        )
        if self.network.private and sandbox != "bubblewrap":
            raise ValidationError(
                "a private network per instance needs the bubblewrap sandbox: use "
                "--backend-opt sandbox_network=host with sandbox=none"
            )
        self.isolation = (
            f"{self.sandbox.describe()}; {self.network.describe()}; {self.limiter.describe()}"
        )
        self.supervisor = Supervisor(
            runtime_dir,
            logs=self.log_store,
            limiter=self.limiter,
            network=self.network,
            host=router_host,
            clock=clock,
            on_change=self._changed,
        )
        #: the shared router (``ingress/``): the Python router, or HAProxy in front of it
        self.router: Ingress = create_ingress(
            data_path,
            host=router_host,
            port=router_port,
            domain=domain,
            activation_timeout=activation_timeout,
            request_timeout=request_timeout,
            on_cold=self._on_cold,
            clock=clock,
            # a data path that outlives a server that dies (HAProxy) is adopted by the
            # next one from here; a clean stop stops it unless instances are kept
            state_dir=runtime_dir / "router",
            metrics_token=router_metrics_token,
            shadow_file=runtime_dir / "shadow-comparisons.json",
        )
        self.supervisor.in_flight = self.router.in_flight
        self.desired: dict[str, DesiredService] = {}
        self.routes: dict[str, ServiceRoute] = {}
        self.autoscalers: dict[str, Autoscaler] = {}
        self.problems: dict[str, tuple[str, str]] = {}
        #: called with a service name when its observed state changed (the reconciler's
        #: ``notify``), so status follows crashes and scaling without waiting for a resync
        self.on_change: Callable[[str], None] | None = None
        self._endpoints: dict[str, Endpoint] = {}
        self._summary: dict[str, list[tuple[str, int, int, bool]]] = {}
        self._dirty = True
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_autoscale = 0.0
        self._lock = asyncio.Lock()
        self._prepares: set[asyncio.Task[None]] = set()

    # ---- lifecycle

    def check_revision(self, spec: RevisionSpec) -> None:
        if spec.port is not None and not self.network.private:
            raise ValidationError(
                f"port {spec.port}: this server's instances share the host's network "
                "(sandbox_network=host), where two instances cannot listen on one port; "
                "drop port and listen on $PORT (every SOS runtime sets it), or run the server "
                "with a network per instance (sandbox_network=private, the sandbox's default)",
                details={"field": "port"},
            )

    def check_traffic(self, route: TrafficRoute) -> None:
        """Both data paths honour every route: sticky splits (``split_by``) and shadow
        revisions (mirrored by the Python router; HAProxy sends it those services)."""

    async def shadow_report(self, service: str) -> list[ShadowComparison] | None:
        return self.router.shadow_report(service)

    async def start(self) -> None:
        if self._task is not None:
            return
        await asyncio.to_thread(self.sandbox.start)
        await self.router.start()
        # an instance reaches other services through the router, as any client
        self.network.router_port = self.router.port
        await asyncio.to_thread(self.network.start)
        adopted = await asyncio.to_thread(self.supervisor.adopt)
        if adopted:
            log.info("re-adopted %d running instance(s)", len(adopted))
        log.info(
            "local backend: router on http://%s:%d; instances %s",
            self.router.host,
            self.router.port,
            self.isolation,
        )
        self._task = asyncio.create_task(self._loop(), name="sos-local-backend")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.preparer.close()
        # the data path keeps serving with the instances, where it can
        await self.router.close(keep_serving=not self.stop_on_close)
        if self.stop_on_close:
            await self.supervisor.stop_all()
        await self.supervisor.close()

    # ---- the Backend seam

    async def apply(self, desired: DesiredService) -> None:
        if self._task is None:
            await self.start()
        async with self._lock:
            self.desired[desired.service.name] = desired
            self._execute(desired)
            await self.supervisor.step()
            self._publish()
        await self._settle()  # the router routes by it when apply returns

    async def observe(self, name: str) -> ObservedService | None:
        desired = self.desired.get(name)
        if desired is None:
            return None
        routable = desired.routable()
        revisions: dict[str, ObservedRevision] = {}
        route = self.routes.get(name)
        tags = dict(route.tags) if route else {}
        tag_of = {rev: tag for tag, rev in tags.items()}
        for revision in desired.revisions:
            rid = revision.id
            if rid is None:
                continue
            url = (
                self.router.tag_url(name, tag_of[rid])
                if rid in tag_of
                else self.router.revision_url(rid)
            )
            # what its instances run with (the server's default memory limit if it sets
            # none), reported whether or not any runs now
            limits = self.limiter.applied(revision.resources)
            if rid in self.problems:
                why, text = self.problems[rid]
                revisions[rid] = ObservedRevision(
                    rid, False, why, text, url=url, failed=True, limits=limits
                )
                continue
            runtime = self.supervisor.revisions.get(rid)
            if runtime is None:
                revisions[rid] = ObservedRevision(rid, False, "Pending", url=url, limits=limits)
                continue
            revisions[rid] = dataclasses.replace(
                self._observe_revision(runtime, url), limits=limits
            )
        ready = desired.traffic is not None and all(
            revisions[r].ready for r in routable if r in revisions
        )
        failed = [r for r in routable if r in revisions and revisions[r].failed]
        if desired.traffic is None:
            reason, message = "NoTraffic", "create a revision to give the service traffic"
        elif failed:
            reason = "RevisionFailed"
            message = f"revision {failed[0]} failed: {revisions[failed[0]].reason}"
        elif not ready:
            reason, message = "Deploying", "waiting for routed revisions to become ready"
        else:
            reason, message = "Ready", ""
        return ObservedService(
            name=name,
            ready=ready,
            reason=reason,
            message=message or None,
            url=self.router.service_url(name),
            revisions=revisions,
            tag_urls={tag: self.router.tag_url(name, tag) for tag in tags},
        )

    def _observe_revision(self, runtime: RevisionRuntime, url: str) -> ObservedRevision:
        # ready: in the router's table too, so that Ready means requests reach it
        target = self.router.table.revisions.get(runtime.id)
        routed = {e.instance for e in target.endpoints} if target else set()
        ready = sum(1 for i in runtime.ready() if i.id in routed)
        instances = Instances(wanted=runtime.wanted, running=len(runtime.live()), ready=ready)
        if runtime.failed:
            return ObservedRevision(
                runtime.id, False, runtime.reason, runtime.message, instances, url, failed=True
            )
        if instances.ready:
            return ObservedRevision(runtime.id, True, "Ready", None, instances, url)
        at_zero = runtime.wanted == 0 and not runtime.live()
        if at_zero and runtime.ever_ready:  # it has served before: Ready at zero instances
            message = "scaled to zero; the next request starts an instance"
            return ObservedRevision(runtime.id, True, "Ready", message, instances, url)
        if at_zero and not runtime.starts and not runtime.failed_starts:
            # initial_scale 0: nothing was started, so there is nothing to wait for
            message = "no instance until the first request (initial_scale 0)"
            return ObservedRevision(runtime.id, True, "Ready", message, instances, url)
        why = runtime.hold or runtime.message or "starting"
        return ObservedRevision(runtime.id, False, "Deploying", why, instances, url)

    async def delete(self, name: str) -> None:
        async with self._lock:
            desired = self.desired.pop(name, None)
            self.routes.pop(name, None)
            revisions = {r.id for r in desired.revisions if r.id} if desired else set()
            revisions |= {
                rid for rid, rt in self.supervisor.revisions.items() if rt.service == name
            }
            revisions |= {
                rid for rid, group in self.supervisor.adopted.items() if group[0].service == name
            }
            for rid in revisions:
                self.supervisor.retire(rid)
                self.autoscalers.pop(rid, None)
                self.problems.pop(rid, None)
            self._publish()
        self._wake.set()
        await self._settle()
        # its logs go with it: a new service of the same name (maybe another team's)
        # starts with none of them
        async with self._lock:
            if name not in self.desired:
                self.supervisor.purged.add(name)
                self.log_store.remove_service(name)
                await asyncio.to_thread(self.sandbox.forget, name)

    async def list_services(self) -> list[str]:
        return sorted(set(self.desired) | self.supervisor.services())

    async def logs(
        self,
        service: str,
        revision: str | None = None,
        *,
        tail: int = 100,
        follow: bool = False,
    ) -> AsyncIterator[LogLine]:
        async for line in self.log_store.read(service, revision, tail=tail, follow=follow):
            yield line

    async def metrics(self, service: str) -> list[RevisionMetricsSample]:
        """The router's request counters of each revision (summed over tags; the same
        numbers its Prometheus ``/metrics`` shows) and the revision's instances now."""
        desired = self.desired.get(service)
        samples = []
        for rid in [r.id for r in desired.revisions if r.id] if desired else []:
            stats = [s for key, s in self.router.metrics.stats.items() if key[:2] == (service, rid)]
            per_bucket = [sum(counts) for counts in zip(*(s.buckets for s in stats), strict=True)]
            bounds = (*BUCKETS, float("inf"))
            runtime = self.supervisor.revisions.get(rid)
            samples.append(
                RevisionMetricsSample(
                    revision=rid,
                    requests=sum(s.count for s in stats),
                    errors=sum(s.errors for s in stats),
                    latency_buckets=tuple(zip(bounds, accumulate(per_bucket), strict=False)),
                    latency_sum_seconds=sum(s.total_seconds for s in stats),
                    in_flight=sum(s.in_flight + s.outside for s in stats),
                    instances=Instances(
                        wanted=runtime.wanted,
                        running=len(runtime.live()),
                        ready=len(runtime.ready()),
                    )
                    if runtime is not None
                    else Instances(),
                )
            )
        return samples

    async def _settle(self) -> None:
        try:
            await self.router.settle()
        except TimeoutError:
            log.warning("the router has not taken the new routing table yet")

    # ---- planning and carrying out

    def _current(self, desired: DesiredService) -> Current:
        ids = {r.id for r in desired.revisions if r.id}
        name = desired.service.name
        wanted = {
            rid: runtime.wanted
            for rid, runtime in self.supervisor.revisions.items()
            if runtime.service == name and runtime.argv is not None
        }
        for rid, group in self.supervisor.adopted.items():
            if group and group[0].service == name and rid not in ids:
                wanted.setdefault(rid, len(group))
        return Current(
            wanted=wanted,
            route=self.routes.get(name),
            autoscaler={rid: a.current for rid, a in self.autoscalers.items() if rid in wanted},
            failed=frozenset(rid for rid in self.problems if rid in ids),
        )

    def _execute(self, desired: DesiredService) -> None:
        name = desired.service.name
        for action in plan(desired, self._current(desired)):
            if isinstance(action, Deploy):
                self._deploy(desired, action)
            elif isinstance(action, Scale):
                runtime = self.supervisor.revisions.get(action.revision)
                if runtime is not None and runtime.wanted != action.instances:
                    log.info(
                        "%s: %d -> %d instance(s)",
                        action.revision,
                        runtime.wanted,
                        action.instances,
                    )
                    runtime.wanted = action.instances
            elif isinstance(action, Retire):
                self.supervisor.retire(action.revision)
                self.autoscalers.pop(action.revision, None)
            elif isinstance(action, SetRoute):
                if action.route is None:
                    self.routes.pop(name, None)
                else:
                    self.routes[name] = action.route
                self._dirty = True
            elif isinstance(action, Fail):
                self.problems[action.revision] = (action.reason, action.message)
                self._dirty = True

    def _deploy(self, desired: DesiredService, action: Deploy) -> None:
        revision = next(r for r in desired.revisions if r.id == action.revision)
        digest = revision.artifact.digest
        assert digest is not None  # plan() only deploys revisions with a known artifact
        artifact = desired.artifacts[digest]
        problem = None
        path: Path | None = None
        if self.artifact_path is None:
            problem = "this server has no artifact store, so artifacts cannot be found by digest"
        else:
            try:
                path = self.artifact_path(digest)
            except Exception as exc:  # the store's own error, told to the user
                problem = f"artifact {digest} cannot be read from the artifact store: {exc}"
            else:
                if not path.is_file():
                    problem = f"artifact file {path} for {digest} does not exist"
                elif artifact.language == "go" and not os.access(path, os.X_OK):
                    path.chmod(path.stat().st_mode | 0o111)
        python = self.sandbox.python.version
        if problem is None and artifact.language == "python" and artifact.runtime_version != python:
            problem = (
                f"artifact {artifact.name} {artifact.version} was built for Python "
                f"{artifact.runtime_version}, and this runtime runs Python {python}: build it "
                f"with Python {python} (sos build on a Python {python} machine)"
            )
            self.problems[action.revision] = ("RuntimeMismatch", problem)
            self._dirty = True
            return
        if problem is not None or path is None:
            self.problems[action.revision] = ("ArtifactMissing", problem or "no artifact path")
            self._dirty = True
            return
        missing = sorted(
            {var.secret for var in revision.env_vars if var.secret} - set(desired.secrets)
        )
        if missing:
            self.problems[action.revision] = (
                "SecretMissing",
                f"secret {', '.join(map(repr, missing))} of team {desired.service.team!r} does "
                f"not exist (any more): set it with `sos secret set {missing[0]} --team "
                f"{desired.service.team}`, or create a revision that does not use it",
            )
            self._dirty = True
            return
        service = desired.service.name
        runtime = runtime_for(
            revision,
            artifact,
            path,
            marker=self.supervisor.marker,
            limiter=self.limiter,
            sandbox=self.sandbox,
            host=self.router.host,
            secrets=lambda: self._secrets_of(service),
        )
        again = action.revision in self.supervisor.known
        runtime = self.supervisor.deploy(runtime)
        if artifact.language == "python":
            # unpack once, in the background, before the first instance starts
            runtime.hold = "preparing the artifact (unpacking its Python packages once)"
            task = asyncio.ensure_future(self._prepare(runtime, artifact, path))
            self._prepares.add(task)
            task.add_done_callback(self._prepares.discard)
        adopted = len(runtime.instances)
        # a revision that comes back after a restart keeps its adopted instances, and does
        # not get its initial scale a second time (the autoscaler applies min_scale)
        runtime.wanted = max(0 if again else action.instances, adopted)
        if again and not adopted:
            runtime.reason = "Ready"
        self.autoscalers[action.revision] = Autoscaler(
            revision.autoscaling, created_at=self.clock()
        )
        if again or adopted:
            self.autoscalers[action.revision].assume(runtime.wanted)
        log.info(
            "deployed %s (%s) with %d instance(s)",
            action.revision,
            artifact.language,
            runtime.wanted,
        )

    def _secrets_of(self, service: str) -> Mapping[str, str]:
        """The secrets of ``service`` as last applied: an instance started after a rotation
        gets the new value (as a Kubernetes pod started after it does)."""
        desired = self.desired.get(service)
        return desired.secrets if desired is not None else {}

    async def _prepare(
        self, runtime: RevisionRuntime, artifact: ArtifactMetadata, path: Path
    ) -> None:
        sandbox, service = self.sandbox, runtime.service
        python = sandbox.python_executable()
        inside = sandbox.artifact_path(path)
        env = inherited_env(os.environ)

        def steps(unpacked: Path) -> list[Step]:
            # unpack, then compile what was unpacked (instances cannot write the bytecode
            # cache into their read-only packages); both as the service, in its sandbox
            site = sandbox.unpacked_path(service, unpacked) / "site-packages"
            commands = [
                launch_command(artifact, inside, python=python),
                [python, "-m", "compileall", "-q", "-j", "0", str(site)],
            ]
            placed = [
                sandbox.wrap(service, argv, env, path, language="python", preparing=True)
                for argv in commands
            ]
            return [(p.argv, p.env, " ".join(c)) for p, c in zip(placed, commands, strict=True)]

        problem = await self.preparer.prepare(
            artifact.digest,
            steps,
            artifact=path,
            shiv_root=sandbox.shiv_root(service),
            service=service,
            revision=runtime.id,
        )
        if self.supervisor.revisions.get(runtime.id) is not runtime:
            return  # retired meanwhile
        if problem is None:
            runtime.hold = None
        else:
            runtime.hold = problem
            runtime.failed = True
            runtime.reason, runtime.message = "PrepareFailed", problem
        self._changed()
        self._changed_service(runtime.service)

    # ---- autoscaling and the activator

    def _on_cold(self, revision: str) -> None:
        scaler = self.autoscalers.get(revision)
        runtime = self.supervisor.revisions.get(revision)
        if scaler is None or runtime is None:
            return
        scaler.poke(self.clock())
        self._autoscale_one(revision, runtime, scaler, self.clock())
        self._wake.set()

    def _autoscale(self, now: float) -> None:
        for rid, runtime in list(self.supervisor.revisions.items()):
            scaler = self.autoscalers.get(rid)
            if scaler is None or runtime.argv is None:
                continue
            scaler.record(now, self.router.concurrency(rid, now))
            self._autoscale_one(rid, runtime, scaler, now)

    def _autoscale_one(
        self, rid: str, runtime: RevisionRuntime, scaler: Autoscaler, now: float
    ) -> None:
        desired = self.desired.get(runtime.service)
        if desired is None:
            return
        starting = not runtime.ever_ready and not runtime.failed and runtime.starts > 0
        decision = scaler.decide(
            now, ready=len(runtime.ready()), routable=rid in desired.routable(), starting=starting
        )
        if decision.wanted != runtime.wanted:
            log.info(
                "autoscaler: %s %d -> %d (%s)",
                rid,
                runtime.wanted,
                decision.wanted,
                decision.reason,
            )
            self._execute(desired)
            self._changed_service(runtime.service)

    # ---- publishing to the router

    def _changed(self) -> None:
        self._dirty = True
        self._wake.set()

    def _changed_service(self, service: str) -> None:
        if self.on_change is not None:
            self.on_change(service)

    def _publish(self) -> None:
        self._dirty = False
        targets = []
        live: set[str] = set()
        for rid, runtime in self.supervisor.revisions.items():
            endpoints = []
            for instance in runtime.ready():
                endpoint = self._endpoints.get(instance.id)
                if endpoint is None:
                    endpoint = Endpoint(instance.id, rid, instance.port, self.router.host)
                    self._endpoints[instance.id] = endpoint
                endpoints.append(endpoint)
                live.add(instance.id)
            why = runtime.message if runtime.failed and not endpoints else None
            if why is None and runtime.argv is None:
                why = f"revision {rid} is being removed"
            check = runtime.revision.health_check
            hold = check.startup_timeout_seconds + check.initial_delay_seconds
            targets.append(RevisionTarget(rid, runtime.service, tuple(endpoints), why, hold))
        for rid, (reason, message) in self.problems.items():
            targets.append(RevisionTarget(rid, revision_parts(rid)[0], (), f"{reason}: {message}"))
        for gone in set(self._endpoints) - live:
            del self._endpoints[gone]
        routes = [self.routes.get(name) or ServiceRoute(name, ()) for name in self.desired]
        self.router.update(RoutingTable(routes, targets))
        summary: dict[str, list[tuple[str, int, int, bool]]] = {}
        for rid, runtime in self.supervisor.revisions.items():
            summary.setdefault(runtime.service, []).append(
                (rid, runtime.wanted, len(runtime.ready()), runtime.failed)
            )
        for name in self.desired:
            state = sorted(summary.get(name, []))
            if self._summary.get(name) != state:
                self._summary[name] = state
                self._changed_service(name)

    async def _loop(self) -> None:
        log_poll = 0.0
        while True:
            try:
                async with self._lock:
                    await self.supervisor.step()
                    now = self.clock()
                    if now >= self._next_autoscale:
                        self._next_autoscale = now + self.autoscale_seconds
                        self._autoscale(now)
                    if self._dirty:
                        self._publish()
                if now >= log_poll:
                    log_poll = now + 0.25
                    await self.log_store.poll()
            except Exception:  # the loop must outlive any one bad step
                log.exception("local backend step failed")
            self._wake.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancellation
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_seconds):
                    await self._wake.wait()


def create_backend(context: BackendContext) -> LocalBackend:
    """The factory the backend registry calls (``--backend local``): the options are
    ``LocalOptions`` (``options.py``; ``docs/sos/local-runtime.md`` has the table). What
    the machine must have for them (bubblewrap, passt) is checked here, at start."""
    options = LocalOptions.parse(context.options)
    data_path = options.router
    if data_path == "auto":
        data_path = "haproxy" if shutil.which("haproxy") else "python"
    if options.sandbox == "bubblewrap":
        problem = sandbox_problem()
        if problem is not None:
            raise ValidationError(
                f"instances cannot be sandboxed here: {problem}. Install bubblewrap and run "
                "the server as root (scripts/setup does both on Debian), or, if every team "
                "that deploys here is trusted, start it with --backend-opt sandbox=none "
                "(SOS_SANDBOX=none): every instance then runs as the server's own user and "
                "can read its data dir"
            )
    network = options.network
    if network == "private":
        problem = (
            network_problem() if options.sandbox == "bubblewrap" else "it needs sandbox=bubblewrap"
        )
        if problem is not None:
            raise ValidationError(
                f"instances cannot have networks of their own here: {problem}. Install passt "
                "(scripts/setup does), or start the server with --backend-opt "
                "sandbox_network=host (SOS_SANDBOX_NETWORK=host): instances then share the "
                "host's loopback, and a revision cannot choose its port"
            )
    backend = LocalBackend(
        context.data_dir,
        artifact_path=context.artifact_path,
        router_host=options.router_host,
        router_port=options.router_port,
        domain=options.domain,
        activation_timeout=options.activation_timeout,
        request_timeout=options.request_timeout,
        stop_on_close=not options.keep_instances,
        data_path=data_path,
        sandbox=options.sandbox,
        sandbox_tmp_bytes=options.sandbox_tmp_bytes,
        sandbox_processes=options.sandbox_processes,
        network=network,
        router_metrics_token=options.metrics_token,
        default_memory=options.default_memory_limit,
    )
    backend.router.bind()  # a port in use is an error now, not a trace at start-up
    return backend
