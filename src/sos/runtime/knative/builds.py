"""Remote builds on Knative: each build is a Kubernetes Job on the curated runtime image.

``KnativeBuildRunner`` is the ``sos.build.runner.BuildRunner`` of a server on Knative
(``KnativeBackend.build_runner``). For one build it:

1. applies a Secret ``sos-build-<id>`` holding a key valid for this build only, and only
   while it runs (``BuildRun.key``: the server checks it on the three routes the Job calls:
   ``GET /api/v1/builds/{id}/source``, ``GET .../toolkit.tar.gz``, ``PUT .../artifact/{name}``);
2. applies the Job (``build_job.render_build_job``) on ``runtime-python:<X.Y>`` (X.Y: the
   server's Python, since the toolkit the Job runs is a copy of the server's build code and
   its compiled libraries: ``sos.build.toolkit``);
3. follows the pod's log (one streamed request, read again from the start, skipping what was
   said, if the connection drops or the API fails) into the build's log, and the Job's
   status to its end; a pod that cannot start (its image cannot be pulled, its
   configuration is wrong) fails the build with Kubernetes' reason instead of waiting for
   the deadline;
4. makes the Job the Secret's owner, so that Kubernetes deletes the Secret with the Job
   (``ttlSecondsAfterFinished``) should this server die during the build;
5. at the end, whatever ended it (the Job, a cancel, a time-out, the server stopping, an
   error), deletes the Job unless it ended (and its pod) and the Secret; what cannot be
   deleted is said in the build's log with the ``kubectl`` command that deletes it.

The API server may fail or not answer for a while (``api_grace``, 120 s) before the build
fails for it; each call waits at most the backend's request timeout, and a stop (cancel,
time-out, shutdown) never waits for a call in flight.

The Job uploads the artifact before it ends, so a Job that succeeded has left it in the
build's ``out`` directory on the server, and the server publishes it as for any build.

Python projects only: the other runtime images have no Python for the Job's bootstrap, so
the server refuses other kinds before the upload (``problem``). The coroutines run on the
backend's event loop (its API client lives there); ``run`` is called from a build worker
thread and waits on them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import queue
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from kubernetes.aio import client as k8s

from sos.build.runner import BuildRun, BuildRunner, LineReader
from sos.build.toolkit import ensure_toolkit, pack_toolkit
from sos.errors import BackendError, PermissionDeniedError, SOSError, ValidationError
from sos.models import Build
from sos.runtime.knative.backend import FIELD_MANAGER
from sos.runtime.knative.build_job import (
    BUILD_LABEL,
    MEMORY,
    apply_build_job,
    build_environ,
    build_image,
    build_job_name,
    job_outcome,
    render_build_job,
    render_build_secret,
)

if TYPE_CHECKING:
    from sos.runtime.knative.backend import KnativeBackend

__all__ = ["KnativeBuildRunner"]

logger = logging.getLogger(__name__)

#: one streamed read of the pod's log lasts at most this long, then it is opened again
LOG_STREAM_SECONDS = 600.0
#: how long the last lines of a pod that ended may take to be read
LOG_TAIL_SECONDS = 30.0
#: how long the Kubernetes API may fail (or not answer) while a build runs before the
#: build fails (a blip, an API server restarting, is waited out)
API_GRACE_SECONDS = 120.0

#: the image cannot be pulled
PULL_FAILED = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
#: a pod waiting for one of these will not start by itself: the build fails with it
STUCK = PULL_FAILED | {"CreateContainerConfigError", "CreateContainerError"}


class KnativeBuildRunner(BuildRunner):
    """Remote builds as Kubernetes Jobs (see the module docstring)."""

    isolation = "knative-job"

    def __init__(
        self,
        backend: KnativeBackend,
        root: Path,
        *,
        poll: float = 1.0,
        api_grace: float = API_GRACE_SECONDS,
        request_timeout: float | None = None,
    ) -> None:
        self.backend = backend
        self.root = root
        self.poll = poll
        self.api_grace = api_grace
        #: how long one API call may take (default: the backend's)
        self.request_timeout = request_timeout or backend.request_timeout
        self.toolkit: Path | None = None
        self.python = f"{sys.version_info.major}.{sys.version_info.minor}"

    # ---- what the server asks

    def ensure(self) -> None:
        if self.toolkit is not None and self.toolkit.is_dir():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            toolkit = ensure_toolkit(self.root)
            pack_toolkit(toolkit)
            self.toolkit = toolkit

    def toolkit_archive(self) -> Path:
        """The toolkit as the ``.tar.gz`` a Job downloads."""
        self.ensure()
        assert self.toolkit is not None
        return pack_toolkit(self.toolkit)

    def image(self) -> str:
        return build_image("python", self.python, self.backend.settings.image_registry)

    def identity(self) -> tuple[str, ...] | None:
        self.ensure()
        assert self.toolkit is not None
        return (self.toolkit.name, self.python, self.isolation, self.image())

    def interpreter(self) -> str:
        return f"python {self.python} ({self.image()})"

    def describe(self) -> str:
        return (
            f"a Kubernetes Job in namespace {self.backend.namespace} on {self.image()}, as "
            "the image's unprivileged user"
        )

    def problem(self, type: str | None = None) -> str | None:
        if self.backend.settings.control_url() is None:
            return (
                "this server runs builds as Kubernetes Jobs, which call it back, but it does "
                "not know its address as pods reach it: start it with SOS_KNATIVE_BUILD_URL "
                "(or --backend-opt build-url=http://sos.sos-system.svc:8700)"
            )
        if type is not None and type != "python":
            return (
                f"remote builds on Knative build Python projects (the Job runs on the "
                f"runtime-python image); build this {type} project with `sos build` and "
                "publish it with `sos push`"
            )
        return None

    # ---- one build

    def run(self, run: BuildRun, output: Callable[[str], None]) -> int | None:
        problem = self.problem(run.build.type)
        if problem is not None:
            raise SOSError(problem)
        self.ensure()
        run.out_dir.mkdir(parents=True, exist_ok=True)
        lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        stopped = asyncio.Event()
        future = self._submit(self._drive(run, lines.put, stopped))

        def stop() -> None:
            self.backend.loop.call_soon_threadsafe(stopped.set)

        if not run.stop.on_stop(stop):
            stop()
        while True:
            try:
                output(lines.get(timeout=0.1))
                continue
            except queue.Empty:
                if not future.done():
                    continue
            while not lines.empty():
                output(lines.get())
            return future.result()

    def _submit(
        self, coroutine: Coroutine[Any, Any, int | None]
    ) -> concurrent.futures.Future[int | None]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.backend.loop)

    def _render(self, build: Build, passed: list[str]) -> dict[str, Any]:
        settings = self.backend.settings.model_copy(update={"namespace": self.backend.namespace})
        return render_build_job(
            build,
            language="python",
            runtime_version=self.python,
            settings=settings,
            control_url=settings.control_url() or "",
            token_secret=build_job_name(build),
            passed=passed,
        )

    async def _drive(
        self, run: BuildRun, emit: Callable[[str], None], stopped: asyncio.Event
    ) -> int | None:
        """Run the build's Job until it ends or the build is stopped; then delete what is
        left of it (the Job unless it ended, and always the Secret), whatever happened."""
        job = _Job(self, run, emit)
        watch = asyncio.ensure_future(self._watch(job))
        halt = asyncio.ensure_future(stopped.wait())
        try:
            # a stop is not kept waiting by an API call that does not answer
            await asyncio.wait({watch, halt}, return_when=asyncio.FIRST_COMPLETED)
            if watch.done():
                return watch.result()
            return None
        finally:
            halt.cancel()
            if not watch.done():
                watch.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await watch
            await job.clean_up()

    async def _watch(self, job: _Job) -> int | None:
        run, emit = job.run, job.emit
        namespace, name = job.namespace, job.name
        backend = self.backend
        environ = build_environ(run.environ)  # pip's index, proxies: as a local build
        secret = render_build_secret(run.build, run.key, namespace, environ)
        job.secret_applied = True  # from here on it may exist: deleted at the end
        await job.apply_secret(
            f"apply the build's Secret {name!r} in namespace {namespace!r}", secret
        )
        spec = self._render(run.build, sorted(environ))
        job.applied = True  # an apply that fails on the way may still have made it
        made = await job.apply(
            f"create the build's Job {name!r} in namespace {namespace!r}",
            apply_build_job(backend.api_client(), spec, request_timeout=self.request_timeout),
        )
        image = spec["spec"]["template"]["spec"]["containers"][0]["image"]
        emit(f"Job {namespace}/{name} created on {image}")
        await self._own_secret(job, secret, made)
        follower = asyncio.create_task(self._follow(job))
        try:
            said = ""
            while True:
                found = await job.read(
                    f"read the build's Job {name!r}",
                    lambda: job.batch.read_namespaced_job_status(
                        name, namespace, _request_timeout=self.request_timeout
                    ),
                    missing=lambda exc: exc.status == 404,
                )
                if found is None:
                    job.applied = False
                    raise BackendError(
                        f"the build's Job {namespace}/{name} was deleted while it ran (by "
                        "someone else than this server); start the build again"
                    )
                status = found.status.to_dict() if found.status is not None else {}
                state, reason = job_outcome(status)
                if state not in ("queued", "running"):
                    break
                waiting = await job.read(
                    f"list the pods of the build's Job {name!r}",
                    lambda: self._waiting(job),
                )
                if waiting is not None and waiting[0] in STUCK:
                    hint = ""
                    if waiting[0] in PULL_FAILED:
                        hint = (
                            f"; builds run on the runtime image of the server's Python "
                            f"({self.python}): push {self.image()} (runtime-images/README.md), "
                            "or set SOS_IMAGE_REGISTRY to a registry that has it"
                        )
                    raise SOSError(
                        f"the build's pod cannot start: {waiting[0]}: {waiting[1]}{hint}"
                    )
                if waiting is not None and waiting[0] != said:
                    said = waiting[0]
                    emit(f"pod waiting: {waiting[0]}" + (f": {waiting[1]}" if waiting[1] else ""))
                await asyncio.sleep(self.poll)
            job.applied = False  # it ended: kept for its ttlSecondsAfterFinished, for kubectl
            # the last lines, when the pod ends (a follower that failed is logged below)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(follower), LOG_TAIL_SECONDS)
            if state == "succeeded":
                return 0
            if state == "timed_out":
                run.stop.stop("timed_out", f"the build's Job passed its deadline: {reason}")
                return None
            ended: tuple[int | None, str | None] = (None, None)
            with contextlib.suppress(SOSError):
                ended = await self._ended(job)
            if ended[1] is not None:
                raise SOSError(ended[1])
            return ended[0] or 1
        finally:
            follower.cancel()
            try:
                await follower
            except asyncio.CancelledError:
                pass
            except Exception:  # the log is lost, not the build
                logger.exception("the log of build %s could not be read", run.build.id)

    async def _own_secret(self, job: _Job, secret: dict[str, Any], made: Any) -> None:
        """Make the Job the owner of the Secret, so that Kubernetes deletes it with the Job
        (at its ``ttlSecondsAfterFinished``) even when this server never comes to."""
        uid = getattr(getattr(made, "metadata", None), "uid", None)
        if not uid:
            return
        owned = dict(secret)
        owned["metadata"] = {
            **secret["metadata"],
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": job.name, "uid": uid}
            ],
        }
        try:
            await job.apply_secret(
                f"make the build's Job {job.name!r} the owner of its Secret", owned
            )
        except SOSError as exc:  # deleted at the end all the same, unless the server stops
            logger.warning("build %s: %s", job.run.build.id, exc.message)

    async def _pods(self, job: _Job) -> list[Any]:
        found = await self.backend.guard(
            f"list the pods of the build's Job {job.name!r}",
            job.core.list_namespaced_pod(
                job.namespace,
                label_selector=f"{BUILD_LABEL}={job.name[10:]}",
                _request_timeout=self.request_timeout,
            ),
        )
        return list(found.items or [])

    async def _waiting(self, job: _Job) -> tuple[str, str] | None:
        """Why the Job's pod is not running yet (reason, message), if it says: its
        container waits, or no node takes it (``Unschedulable``)."""
        for pod in await self._pods(job):
            for container in (pod.status.container_statuses if pod.status else None) or []:
                waiting = container.state.waiting if container.state else None
                if waiting is not None and waiting.reason:
                    return str(waiting.reason), str(waiting.message or "")
            for condition in (pod.status.conditions if pod.status else None) or []:
                if condition.type == "PodScheduled" and condition.status == "False":
                    return str(condition.reason or "Pending"), str(condition.message or "")
        return None

    async def _ended(self, job: _Job) -> tuple[int | None, str | None]:
        """How the pod of a Job that failed ended: the exit code of its container, and why
        Kubernetes ended it, when it did (killed past its memory limit, evicted)."""
        for pod in await self._pods(job):
            status = pod.status
            if status is not None and status.reason == "Evicted":
                return None, (
                    f"Kubernetes evicted the build's pod: {status.message or 'Evicted'}; build "
                    "again"
                )
            for container in (status.container_statuses if status else None) or []:
                done = container.state.terminated if container.state else None
                if done is None:
                    continue
                if done.reason == "OOMKilled":
                    return done.exit_code, (
                        f"the build's pod used more memory than its limit ({MEMORY}) and was "
                        "killed (OOMKilled): its dependencies take more to install or build "
                        "than a Job has; build it with `sos build` and publish it with `sos push`"
                    )
                if done.exit_code is not None:
                    return int(done.exit_code), None
        return None, None

    async def _follow(self, job: _Job) -> None:
        """The pod's log, line by line, as it comes. After a dropped connection or an API
        error it is read again from the start, skipping the lines already said; it ends
        once a read reached the end of the log of a pod that ended."""
        said = 0
        while True:
            try:
                pods = await self._pods(job)
            except SOSError as exc:
                logger.debug("build %s: %s", job.run.build.id, exc.message)
                pods = []
            if not pods:
                await asyncio.sleep(self.poll)
                continue
            pod = pods[-1]
            try:
                stream: aiohttp.ClientResponse = await self.backend.guard(
                    f"read the log of the build's pod {pod.metadata.name!r}",
                    job.core.read_namespaced_pod_log_without_preload_content(
                        pod.metadata.name,
                        job.namespace,
                        container="builder",
                        follow=True,
                        _request_timeout=LOG_STREAM_SECONDS,
                    ),
                )
            except SOSError as exc:
                logger.debug("build %s: %s", job.run.build.id, exc.message)
                await asyncio.sleep(self.poll)
                continue
            seen = 0
            lines = LineReader()  # each line bounded: output without newlines is cut
            whole = False  # read to its end, not cut off

            def said_once(found: list[str]) -> None:
                nonlocal seen, said
                for line in found:
                    seen += 1
                    if seen > said:
                        said = seen
                        job.emit(line)

            try:
                if stream.status == 200:
                    async for chunk in stream.content.iter_any():
                        said_once(lines.feed(chunk))
                    whole = True
            except (TimeoutError, aiohttp.ClientError):
                pass  # the connection dropped: open it again
            finally:
                stream.release()
            if whole:
                try:
                    current = await self._pods(job)
                except SOSError:
                    current = []
                if any(
                    p.status is not None and p.status.phase in ("Succeeded", "Failed")
                    for p in current
                ):
                    said_once(lines.end())
                    return
            await asyncio.sleep(self.poll)


class _Job:
    """One build's Job while the runner drives it: its API clients, what it made (to
    delete at the end), and the patience of its reads with an API server that fails."""

    def __init__(self, runner: KnativeBuildRunner, run: BuildRun, emit: Callable[[str], None]):
        self.runner = runner
        self.run = run
        self.emit = emit
        self.namespace = runner.backend.namespace
        self.name = build_job_name(run.build)
        api = runner.backend.api_client()
        self.batch, self.core = k8s.BatchV1Api(api), k8s.CoreV1Api(api)
        #: the Job may exist and has not ended: deleted at the end
        self.applied = False
        #: the Secret may exist: deleted at the end
        self.secret_applied = False
        #: the applies on their way, awaited before what they make is deleted
        self._applies: list[asyncio.Future[Any]] = []
        #: since when the API server fails (loop time), None while it answers
        self._failing: float | None = None

    async def apply(self, action: str, call: Awaitable[Any]) -> Any:
        """One apply (``backend.guard``), not cancelled by a stop on its way: what it makes
        is deleted after it lands (an API server goes on with a request it took)."""
        applying = asyncio.ensure_future(self.runner.backend.guard(action, call))
        self._applies.append(applying)
        return await asyncio.shield(applying)

    async def apply_secret(self, action: str, secret: dict[str, Any]) -> Any:
        """Apply the build's Secret (server-side apply, as every object SOS owns)."""
        return await self.apply(
            action,
            self.core.patch_namespaced_secret(
                self.name,
                self.namespace,
                secret,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _request_timeout=self.runner.request_timeout,
            ),
        )

    async def read(
        self,
        action: str,
        call: Callable[[], Awaitable[Any]],
        *,
        missing: Callable[[k8s.ApiException], bool] = lambda _: False,
    ) -> Any:
        """``call()`` (a read), tried again while the API server fails or does not answer,
        for up to the runner's ``api_grace`` seconds; refusals (403, 4xx) at once."""
        runner = self.runner
        loop = asyncio.get_running_loop()
        while True:
            try:
                result = await runner.backend.guard(action, call(), missing=missing)
            except (PermissionDeniedError, ValidationError):
                raise
            except SOSError as exc:
                now = loop.time()
                if self._failing is None:
                    self._failing = now
                    self.emit(f"{exc.message}; trying again for {runner.api_grace:g} s")
                elif now - self._failing >= runner.api_grace:
                    raise BackendError(
                        f"lost touch with the build's Job {self.namespace}/{self.name}: the "
                        f"Kubernetes API failed for {runner.api_grace:g} s; the last time: "
                        f"{exc.message}",
                        details=exc.details,
                    ) from None
                await asyncio.sleep(max(runner.poll, 0.5))
                continue
            if self._failing is not None:
                self._failing = None
                self.emit("the Kubernetes API answers again")
            return result

    async def clean_up(self) -> None:
        """Delete the Job (unless it ended) and the Secret; what cannot be deleted is said
        in the build's log with the command that deletes it."""
        namespace, name = self.namespace, self.name
        timeout = self.runner.request_timeout
        if self._applies:  # (each ends within the request timeout)
            await asyncio.wait(self._applies)
            for applying in self._applies:  # (a failure is the build's reason)
                if not applying.cancelled():
                    applying.exception()
        if self.applied:
            deadline = self.run.build.timeout_seconds or 1800
            await self._delete(
                f"delete the build's Job {name!r}",
                self.batch.delete_namespaced_job(
                    name, namespace, propagation_policy="Background", _request_timeout=timeout
                ),
                f"the Job stops at its deadline ({deadline:g} s after it started), or delete "
                f"it: kubectl delete job -n {namespace} {name}",
            )
        if self.secret_applied:
            await self._delete(
                f"delete the build's Secret {name!r}",
                self.core.delete_namespaced_secret(name, namespace, _request_timeout=timeout),
                f"Kubernetes deletes it with the Job, or delete it: kubectl delete secret -n "
                f"{namespace} {name}",
            )

    async def _delete(self, action: str, call: Awaitable[Any], advice: str) -> None:
        try:
            await self.runner.backend.guard(action, call, missing=lambda exc: exc.status == 404)
        except SOSError as exc:
            logger.warning("build %s: %s", self.run.build.id, exc.message)
            self.emit(f"{exc.message}; {advice}")
