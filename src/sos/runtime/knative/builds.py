"""Remote builds on Knative: each build is a Kubernetes Job on the curated runtime image.

``KnativeBuildRunner`` is the ``sos.build.runner.BuildRunner`` of a server on Knative
(``KnativeBackend.build_runner``). For one build it:

1. applies a Secret ``sos-build-<id>`` holding a key valid for this build only, and only
   while it runs (``BuildRun.key``: the server checks it on the three routes the Job calls:
   ``GET /api/v1/builds/{id}/source``, ``GET .../toolkit.tar.gz``, ``PUT .../artifact/{name}``);
2. applies the Job (``build_job.render_build_job``) on ``runtime-python:<X.Y>`` (X.Y: the
   server's Python, since the toolkit the Job runs is a copy of the server's build code and
   its compiled libraries: ``sos.build.toolkit``);
3. follows the pod's log (one streamed request, re-opened where it left off if the
   connection drops) into the build's log, and the Job's status to its end; a pod that
   cannot start (its image cannot be pulled, its configuration is wrong) fails the build with
   Kubernetes' reason instead of waiting for the deadline;
4. on cancel or time-out deletes the Job (and its pod); at the end deletes the Secret.

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
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from kubernetes.aio import client as k8s

from sos.build.runner import BuildRun, BuildRunner
from sos.build.toolkit import ensure_toolkit, pack_toolkit
from sos.errors import BackendError, SOSError
from sos.models import Build
from sos.runtime.knative.build_job import (
    BUILD_LABEL,
    apply_build_job,
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

#: a pod waiting for one of these will not start by itself: the build fails with it
STUCK = frozenset(
    {
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


class KnativeBuildRunner(BuildRunner):
    """Remote builds as Kubernetes Jobs (see the module docstring)."""

    isolation = "knative-job"

    def __init__(self, backend: KnativeBackend, root: Path, *, poll: float = 1.0) -> None:
        self.backend = backend
        self.root = root
        self.poll = poll
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

    def _render(self, build: Build) -> dict[str, Any]:
        settings = self.backend.settings.model_copy(update={"namespace": self.backend.namespace})
        return render_build_job(
            build,
            language="python",
            runtime_version=self.python,
            settings=settings,
            control_url=settings.control_url() or "",
            token_secret=build_job_name(build),
        )

    async def _drive(
        self, run: BuildRun, emit: Callable[[str], None], stopped: asyncio.Event
    ) -> int | None:
        backend = self.backend
        namespace = backend.namespace
        name = build_job_name(run.build)
        api = backend.api_client()
        batch, core = k8s.BatchV1Api(api), k8s.CoreV1Api(api)
        secret = render_build_secret(run.build, run.key, namespace)
        await backend.guard(
            f"apply the build's Secret {name!r} in namespace {namespace!r}",
            core.patch_namespaced_secret(
                name,
                namespace,
                secret,
                field_manager="sos",
                force=True,
                _content_type="application/apply-patch+yaml",
            ),
        )
        follower: asyncio.Task[None] | None = None
        try:
            job = self._render(run.build)
            await backend.guard(
                f"create the build's Job {name!r} in namespace {namespace!r}",
                apply_build_job(api, job),
            )
            image = job["spec"]["template"]["spec"]["containers"][0]["image"]
            emit(f"Job {namespace}/{name} created on {image}")
            follower = asyncio.create_task(self._follow(core, namespace, name, emit))
            said = ""
            while True:
                if stopped.is_set():
                    await self._delete_job(batch, namespace, name)
                    return None
                found = await backend.guard(
                    f"read the build's Job {name!r}",
                    batch.read_namespaced_job_status(name, namespace),
                    missing=lambda exc: exc.status == 404,
                )
                if found is None:
                    raise BackendError(f"the build's Job {namespace}/{name} was deleted")
                status = found.status.to_dict() if found.status is not None else {}
                state, reason = job_outcome(status)
                if state not in ("queued", "running"):
                    break
                waiting = await self._waiting(core, namespace, name)
                if waiting is not None and waiting[0] in STUCK:
                    await self._delete_job(batch, namespace, name)
                    raise SOSError(f"the build's pod cannot start: {waiting[0]}: {waiting[1]}")
                if waiting is not None and waiting[0] != said:
                    said = waiting[0]
                    emit(f"pod waiting: {waiting[0]}" + (f": {waiting[1]}" if waiting[1] else ""))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), self.poll)
            with contextlib.suppress(TimeoutError):  # the last lines, when the pod ends
                await asyncio.wait_for(asyncio.shield(follower), 10)
            if state == "succeeded":
                return 0
            if state == "timed_out":
                run.stop.stop("timed_out", f"the build's Job passed its deadline: {reason}")
                return None
            return await self._exit_code(core, namespace, name) or 1
        finally:
            if follower is not None:
                follower.cancel()
                try:
                    await follower
                except asyncio.CancelledError:
                    pass
                except Exception:  # the log is lost, not the build
                    logger.exception("the log of build %s could not be read", run.build.id)
            with contextlib.suppress(SOSError):
                await backend.guard(
                    f"delete the build's Secret {name!r}",
                    core.delete_namespaced_secret(name, namespace),
                    missing=lambda exc: exc.status == 404,
                )

    async def _delete_job(self, batch: k8s.BatchV1Api, namespace: str, name: str) -> None:
        await self.backend.guard(
            f"delete the build's Job {name!r}",
            batch.delete_namespaced_job(name, namespace, propagation_policy="Background"),
            missing=lambda exc: exc.status == 404,
        )

    async def _pods(self, core: k8s.CoreV1Api, namespace: str, name: str) -> list[Any]:
        found = await self.backend.guard(
            f"list the pods of the build's Job {name!r}",
            core.list_namespaced_pod(namespace, label_selector=f"{BUILD_LABEL}={name[10:]}"),
        )
        return list(found.items or [])

    async def _waiting(
        self, core: k8s.CoreV1Api, namespace: str, name: str
    ) -> tuple[str, str] | None:
        """Why the Job's pod is not running yet (reason, message), if it says."""
        for pod in await self._pods(core, namespace, name):
            for container in (pod.status.container_statuses if pod.status else None) or []:
                waiting = container.state.waiting if container.state else None
                if waiting is not None and waiting.reason:
                    return str(waiting.reason), str(waiting.message or "")
        return None

    async def _exit_code(self, core: k8s.CoreV1Api, namespace: str, name: str) -> int | None:
        for pod in await self._pods(core, namespace, name):
            for container in (pod.status.container_statuses if pod.status else None) or []:
                done = container.state.terminated if container.state else None
                if done is not None and done.exit_code is not None:
                    return int(done.exit_code)
        return None

    async def _follow(
        self, core: k8s.CoreV1Api, namespace: str, name: str, emit: Callable[[str], None]
    ) -> None:
        """The pod's log, line by line, as it comes; after a dropped connection, again from
        the start, skipping the lines already said."""
        said = 0
        while True:
            pods = await self._pods(core, namespace, name)
            if not pods:
                await asyncio.sleep(self.poll)
                continue
            pod = pods[-1]
            response = await self.backend.guard(
                f"read the log of the build's pod {pod.metadata.name!r}",
                core.read_namespaced_pod_log_without_preload_content(
                    pod.metadata.name,
                    namespace,
                    container="builder",
                    follow=True,
                    _request_timeout=LOG_STREAM_SECONDS,
                ),
            )
            stream: aiohttp.ClientResponse = response
            seen = 0
            pending = b""

            def said_once(raw: bytes) -> None:
                nonlocal seen, said
                seen += 1
                if seen > said:
                    said = seen
                    emit(raw.decode("utf-8", errors="replace"))

            try:
                if stream.status != 200:  # not started yet
                    await asyncio.sleep(self.poll)
                    continue
                async for chunk in stream.content.iter_any():
                    *complete, pending = (pending + chunk).split(b"\n")
                    for raw in complete:
                        said_once(raw)
            except (TimeoutError, aiohttp.ClientError):
                pass  # the connection dropped: open it again
            finally:
                stream.release()
            current = await self._pods(core, namespace, name)
            if any(
                p.status is not None and p.status.phase in ("Succeeded", "Failed") for p in current
            ):
                if pending:
                    said_once(pending)
                return
            await asyncio.sleep(self.poll)
