"""Remote builds: a project's packed source, built on the server into an artifact.

::

    POST /api/v1/builds[?type=&frozen=&project=&no_cache=]   body: the source, gzipped
         X-SOS-Source-Digest: sha256:<hex>  its tar's digest (sos.build.source; else 422)
         -> 201 the Build, queued (its place in the queue in ``position``), or finished
            at once when this builder built this source before (unless no_cache)
    POST /api/v1/builds?reuse_only=true    no body: that finished Build, or 404
    GET  /api/v1/builds                    the builds this token may see, newest first
    GET  /api/v1/builds/{id}               state, steps with times, the artifact it made
    GET  /api/v1/builds/{id}/log[?follow=] its events as NDJSON (plan, begin, output, end,
                                           state), following until it ends
    GET  /api/v1/builds/{id}/lock          the lock file it installed from (``Build.lock``)
    POST /api/v1/builds/{id}/cancel        a queued build leaves the queue, a running one
                                           is stopped

A build goes ``queued`` -> ``running`` -> ``succeeded`` | ``failed`` | ``cancelled`` |
``timed_out``. At most ``SOS_BUILD_CONCURRENCY`` (default 2) run at once, the rest wait
in order; each may run ``SOS_BUILD_TIMEOUT_SECONDS`` (default 1800), then it is stopped
with that reason. The builder is ``sos.server.build_sandbox``: a clean, sandboxed
environment of the runtime's Python, never the server's own. A build that succeeds puts
its artifact in the artifact store (as ``sos push`` would, under the same rules: a pushed
version is immutable, a name belongs to its team), with its provenance in
``extra.provenance``: the source digest, the builder, the resolved packages and the
digest of the build log.

Who may: writers and admins start builds (readers get a 403 before a byte is read);
every token sees the builds of its own team and its own (admins all); cancelling takes a
writer of the build's team or an admin. Uploads above ``SOS_MAX_SOURCE_BYTES`` (default
64 MiB) are a 413.

A build that succeeds also records the lock file it installed from (``Build.lock``, its
text kept beside the record up to ``MAX_LOCK_BYTES``): the one in the source, or the one
it resolved, which ``sos build --remote`` writes beside the project as a local build would;
a reused build has the lock of the build it reuses.

Records live under ``DATA_DIR/builds/records`` (one JSON file per build, its event log,
its log and its lock file): they outlive the server; builds that were queued or running
when it stopped are failed with that reason when it starts again. The
``SOS_BUILD_HISTORY`` (default 200) most recently finished builds are kept; older finished
ones are dropped at start and whenever a build finishes, with the reuse of their source
(that source builds again).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, status
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from sos.artifacts.base import CHUNK_SIZE
from sos.artifacts.safety import check_digest
from sos.build._remote_worker import MAX_LOCK_BYTES
from sos.build.cache import stable_key
from sos.build.runner import BuildRun, BuildRunner
from sos.build.source import (
    UNPACK_RATIO,
    max_source_bytes,
    safe_project_dir,
    source_digest,
)
from sos.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    SOSError,
    ValidationError,
)
from sos.models import BUILD_DONE, ArtifactMetadata, Build, BuildLock, BuildStep, Token
from sos.server.auth import Principal, bearer
from sos.server.background import seconds_from_env
from sos.server.build_sandbox import BuilderEnvironment
from sos.server.errors import BINARY_BODY, ERROR_RESPONSES

if TYPE_CHECKING:
    from sos.server.app import ServerState

__all__ = ["BuildService", "configure", "router"]

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 2
DEFAULT_TIMEOUT = 1800.0
#: the route a builder elsewhere uploads its artifact to, with the build's key
_OUTPUT_PATH = re.compile(r"/api/v1/builds/([^/]+)/artifact/[^/]+")
#: how many finished builds keep their records (SOS_BUILD_HISTORY)
DEFAULT_HISTORY = 200


def _now() -> datetime:
    return datetime.now(UTC)


def _number(variable: str, default: int, most: int, what: str = "") -> int:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise ValidationError(f"{variable}={raw!r} must be a number from 1 to {most}{what}")
    return int(raw)


def _concurrency() -> int:
    return _number("SOS_BUILD_CONCURRENCY", DEFAULT_CONCURRENCY, 64)


def _history() -> int:
    return _number(
        "SOS_BUILD_HISTORY",
        DEFAULT_HISTORY,
        100_000,
        ": the finished builds whose records are kept",
    )


class BuildService:
    """The queue, the workers and the records of remote builds (see the module doc)."""

    def __init__(
        self,
        root: Path,
        *,
        builder: BuildRunner | None = None,
        builder_for: Callable[[], BuildRunner | None] | None = None,
        concurrency: int | None = None,
        history: int | None = None,
        timeout: float | None = None,
        max_source: int | None = None,
        publish: Callable[[Build, Path, dict[str, Any], Token], ArtifactMetadata] | None = None,
        stored: Callable[[ArtifactMetadata, Token], ArtifactMetadata | None] | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.records = root / "records"
        self.work_root = root / "work"
        self.records.mkdir(parents=True, exist_ok=True)
        self.work_root.mkdir(parents=True, exist_ok=True)
        self._builder = builder
        self._builder_for = builder_for
        self._builder_lock = threading.Lock()
        self.concurrency = concurrency or _concurrency()
        self.history = history or _history()
        self.timeout = timeout or seconds_from_env(
            "SOS_BUILD_TIMEOUT_SECONDS", DEFAULT_TIMEOUT, 1, 24 * 3600
        )
        self.max_source = max_source or max_source_bytes()
        self.publish = publish
        self.stored = stored
        self._reuse_file = self.records / "reuse.json"
        self._reuse: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            self._reuse = dict(json.loads(self._reuse_file.read_text(encoding="utf-8")))
        self.environ = dict(os.environ if environ is None else environ)
        self._lock = threading.Condition()
        self._builds: dict[str, Build] = {}
        self._tokens: dict[str, Token] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._running: dict[str, BuildRun] = {}
        self._workers: list[threading.Thread] = []
        self._closed = False
        self._ready = False
        self._load()
        self._prune()

    @property
    def builder(self) -> BuildRunner:
        """Where builds run: ``builder``, else what ``builder_for`` says (the backend's,
        asked at the first build since plug-ins are configured before the backend is made),
        else the sandboxed local builder."""
        with self._builder_lock:
            if self._builder is None:
                made = self._builder_for() if self._builder_for is not None else None
                self._builder = made or BuilderEnvironment(self.root)
            return self._builder

    # ---- records

    def _record_file(self, build_id: str) -> Path:
        return self.records / f"{build_id}.json"

    def events_file(self, build_id: str) -> Path:
        return self.records / f"{build_id}.events.ndjson"

    def log_file(self, build_id: str) -> Path:
        return self.records / f"{build_id}.log"

    def lock_file(self, build_id: str) -> Path:
        """The text of the lock file the build installed from (``Build.lock``)."""
        return self.records / f"{build_id}.lockfile"

    def _load(self) -> None:
        for file in sorted(self.records.glob("*.json")):
            try:
                build = Build.model_validate_json(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if build.state not in BUILD_DONE:
                build.state = "failed"
                build.reason = "the server stopped while this build was queued or running"
                build.finished_at = _now()
                build.position = None
                self._save(build)
            self._builds[build.id] = build

    def _save(self, build: Build) -> None:
        file = self._record_file(build.id)
        tmp = file.with_suffix(".tmp")
        tmp.write_text(build.model_dump_json(indent=1), encoding="utf-8")
        tmp.replace(file)

    def _event(self, build_id: str, **event: Any) -> None:
        event.setdefault("at", _now().isoformat())
        with self.events_file(build_id).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(event) + "\n")

    # ---- the API's operations

    def submit(
        self,
        source: Path,
        digest: str,
        token: Token,
        *,
        type: str | None = None,
        frozen: bool = False,
        project: str = ".",
        use_cache: bool = True,
    ) -> Build:
        """Queue a build of the source archive at ``source`` (moved under the service);
        the same source built before by this builder reuses that build's artifact."""
        build = self._new(digest, token, type=type, frozen=frozen, project=project)
        work = self.work_root / build.id
        work.mkdir(parents=True)
        source.replace(work / "source.tar.gz")
        build.source_size = (work / "source.tar.gz").stat().st_size
        build_id = build.id
        if use_cache and self._reused(build, token):
            shutil.rmtree(work, ignore_errors=True)
            return build.model_copy(deep=True)
        with self._lock:
            if self._closed:
                raise SOSError("the server is shutting down; start the build again")
            self._builds[build_id] = build
            self._tokens[build_id] = token
            self._queue.append(build_id)
            self._positions()
            self._save(build)
            self._event(build_id, event="state", state="queued", position=build.position)
            self._start_workers()
            self._lock.notify()
            return build.model_copy(deep=True)

    def _new(
        self, digest: str, token: Token, *, type: str | None, frozen: bool, project: str
    ) -> Build:
        return Build(
            id=_now().strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:8],
            state="queued",
            source_digest=digest,
            source_size=0,
            created_by=token.name,
            team=token.team,
            created_at=_now(),
            type=type,
            project=safe_project_dir(project),
            frozen=frozen,
            builder=self.builder.isolation,
            timeout_seconds=self.timeout,
        )

    def reuse(
        self,
        digest: str,
        token: Token,
        *,
        type: str | None = None,
        frozen: bool = False,
        project: str = ".",
    ) -> Build | None:
        """A finished build that reuses the earlier build of source ``digest`` by this
        builder, without its upload; None when there is none to reuse."""
        build = self._new(digest, token, type=type, frozen=frozen, project=project)
        if not self._reused(build, token):
            return None
        return build.model_copy(deep=True)

    def _reuse_key(self, build: Build) -> str | None:
        identity = self.builder.identity()
        if identity is None:
            return None
        return stable_key(build.source_digest, build.type, build.frozen, build.project, *identity)

    def _reused(self, build: Build, token: Token) -> bool:
        """Finish ``build`` at once with the artifact of the earlier build of the same
        source by this builder, when there is one and it is still in the store."""
        key = self._reuse_key(build)
        with self._lock:
            earlier = self._builds.get(self._reuse.get(key or "", ""))
        if earlier is None or earlier.artifact is None or self.stored is None:
            return False
        artifact = self.stored(earlier.artifact, token)
        if artifact is None:
            return False
        step = "Reuse the build of the same source"
        now = _now()
        build.state, build.started_at = "running", now
        build.steps = [BuildStep(name=step, state="done", started_at=now, finished_at=now)]
        build.steps[0].detail = earlier.id
        build.source_size = earlier.source_size
        with self._lock:
            self._builds[build.id] = build
            self._event(build.id, event="plan", steps=[step])
            self._event(build.id, event="begin", step=step)
            self._log(
                build.id,
                f"source {build.source_digest} was built by build {earlier.id} with this "
                f"builder: its artifact {artifact.name} {artifact.version} "
                f"({artifact.digest}) is reused (--no-cache builds again)",
            )
            self._event(build.id, event="end", step=step, detail=earlier.id)
            build.artifact = artifact
            build.warnings = list(earlier.warnings)
            if earlier.lock is not None:
                with contextlib.suppress(OSError):
                    shutil.copyfile(self.lock_file(earlier.id), self.lock_file(build.id))
                    build.lock = earlier.lock.model_copy()
            self._finish(build, "succeeded", None)
        return True

    def lock_text(self, build_id: str, token: Token) -> str:
        """The text of the lock file build ``build_id`` installed from."""
        build = self.get(build_id, token)
        try:
            if build.lock is not None:
                return self.lock_file(build_id).read_text(encoding="utf-8")
        except FileNotFoundError:
            pass
        raise NotFoundError(
            f"build {build_id} has no lock file: it did not succeed, or its project has "
            "none (every dependency pinned, or none)",
            details={"id": build_id},
        )

    def get(self, build_id: str, token: Token) -> Build:
        with self._lock:
            build = self._builds.get(build_id)
            if build is None or not _may_see(token, build):
                raise NotFoundError(f"no build {build_id!r}", details={"id": build_id})
            return build.model_copy(deep=True)

    def list(self, token: Token) -> list[Build]:
        with self._lock:
            seen = [b.model_copy(deep=True) for b in self._builds.values() if _may_see(token, b)]
        return sorted(seen, key=lambda b: b.created_at, reverse=True)

    def cancel(self, build_id: str, token: Token) -> Build:
        with self._lock:
            build = self._builds.get(build_id)
            if build is None or not _may_see(token, build):
                raise NotFoundError(f"no build {build_id!r}", details={"id": build_id})
            _may_change(token, build)
            if build.state in BUILD_DONE:
                return build.model_copy(deep=True)
            reason = f"cancelled by {token.name}"
            if build_id in self._queue:
                self._queue.remove(build_id)
                self._finish(build, "cancelled", reason)
                self._positions()
                return build.model_copy(deep=True)
            running = self._running.get(build_id)
        if running is not None:
            running.stop.stop("cancelled", reason)
        for _ in range(100):  # until its worker has recorded the end
            with self._lock:
                if build.state in BUILD_DONE:
                    break
            time.sleep(0.05)
        with self._lock:
            return build.model_copy(deep=True)

    def check(self, type: str | None) -> None:
        """Refuse, before an upload, a build this server's builder cannot run."""
        problem = self.builder.problem(type)
        if problem is not None:
            raise ValidationError(problem, details={"builder": self.builder.isolation})

    def running(self, build_id: str, key: str) -> BuildRun:
        """The running build ``build_id`` whose key is ``key`` (a builder calling back);
        any other key, or a build not running, is refused alike."""
        with self._lock:
            run = self._running.get(build_id)
        if run is None or not key or not hmac.compare_digest(run.key, key):
            raise AuthenticationError(
                f"this key does not open build {build_id!r}: a build's key is valid only "
                "for that build, while it runs"
            )
        return run

    def opens(self, method: str, path: str, secret: str) -> bool:
        """Whether ``secret`` is the key of the running build whose output ``path`` names
        (``PUT /api/v1/builds/{id}/artifact/{name}``): the request guard asks."""
        found = _OUTPUT_PATH.fullmatch(path)
        if method != "PUT" or found is None:
            return False
        try:
            self.running(found[1], secret)
        except AuthenticationError:
            return False
        return True

    def is_done(self, build_id: str) -> bool:
        with self._lock:
            build = self._builds.get(build_id)
            return build is None or build.state in BUILD_DONE

    def close(self) -> None:
        """Stop: queued builds are cancelled, running ones stopped (the server is going)."""
        with self._lock:
            self._closed = True
            for build_id in list(self._queue):
                self._finish(self._builds[build_id], "cancelled", "the server stopped")
            self._queue.clear()
            running = list(self._running.values())
            self._lock.notify_all()
        for item in running:
            item.stop.stop("failed", "the server stopped during the build")
        for worker in self._workers:
            worker.join(timeout=10)

    # ---- the queue

    def _positions(self) -> None:
        for place, build_id in enumerate(self._queue, start=1):
            build = self._builds[build_id]
            if build.position != place:
                build.position = place
                self._save(build)

    def _start_workers(self) -> None:
        if self._workers:
            return
        for number in range(self.concurrency):
            worker = threading.Thread(target=self._work, name=f"sos-build-{number}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                build_id = self._queue.popleft()
                build = self._builds[build_id]
                token = self._tokens.pop(build_id)
                running = BuildRun(
                    build=build,
                    dir=self.work_root / build_id,
                    request={"type": build.type, "frozen": build.frozen, "created_by": token.name},
                    environ=self.environ,
                    key=secrets.token_urlsafe(32),
                    max_unpacked=self.max_source * UNPACK_RATIO,
                )
                self._running[build_id] = running
                build.state = "running"
                build.position = None
                build.started_at = _now()
                self._positions()
                self._save(build)
            self._event(build_id, event="state", state="running")
            try:
                self._run(build, token, running)
            except Exception as exc:  # never lose a worker to one build
                log.exception("build %s failed unexpectedly", build_id)
                with self._lock:
                    self._finish(build, "failed", f"the server could not run the build: {exc}")
            finally:
                with self._lock:
                    self._running.pop(build_id, None)
                if not os.environ.get("SOS_KEEP_BUILD_DIR"):
                    shutil.rmtree(self.work_root / build_id, ignore_errors=True)

    def _finish(self, build: Build, state: str, reason: str | None) -> None:
        """Record the end (the caller holds the lock)."""
        build.state = state  # type: ignore[assignment]
        build.reason = reason
        build.position = None
        build.finished_at = _now()
        for step in build.steps:
            if step.state == "running":
                step.state = "failed"
                step.finished_at = build.finished_at
        log_file = self.log_file(build.id)
        if log_file.exists():
            build.log_digest = "sha256:" + hashlib.sha256(log_file.read_bytes()).hexdigest()
        self._save(build)
        self._event(build.id, event="state", state=state, reason=reason)
        self._lock.notify_all()
        self._prune(build.id)

    def _prune(self, just_finished: str = "") -> None:
        """Drop the records of the finished builds past the ``history`` most recently
        finished (never ``just_finished``, never a queued or running one), and the reuse
        of their sources (the caller holds the lock, or is ``__init__``)."""
        done = sorted(
            (b for b in self._builds.values() if b.state in BUILD_DONE),
            key=lambda b: (b.id == just_finished, b.finished_at or b.created_at),
            reverse=True,
        )
        for build in done[self.history :]:
            del self._builds[build.id]
            for file in (
                self._record_file(build.id),
                self.events_file(build.id),
                self.log_file(build.id),
                self.lock_file(build.id),
            ):
                file.unlink(missing_ok=True)
        reuse = {key: i for key, i in self._reuse.items() if i in self._builds}
        if reuse != self._reuse:
            self._reuse = reuse
            self._save_reuse()

    def _save_reuse(self) -> None:
        tmp = self._reuse_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._reuse, indent=1), encoding="utf-8")
        tmp.replace(self._reuse_file)

    # ---- one build

    def _run(self, build: Build, token: Token, running: BuildRun) -> None:
        self._log(build.id, f"build {build.id}: source {build.source_digest}")
        outcome: dict[str, Any] | None = None
        error: str | None = None

        def output(line: str) -> None:
            nonlocal outcome, error
            event = _parse(line)
            if event is None:
                self._output(build, line)
            elif event["event"] == "result":
                outcome = event["result"]
            elif event["event"] == "error":
                error = str(event.get("message", "the build failed"))
                self._log(build.id, f"FAILED: {error}")
            else:
                self._step_event(build, event)

        timer = threading.Timer(
            self.timeout,
            running.stop.stop,
            (
                "timed_out",
                f"the build did not finish within {self.timeout:g} s (SOS_BUILD_TIMEOUT_SECONDS)",
            ),
        )
        code: int | None = None
        try:
            self.builder.ensure()
            self._log(build.id, f"builder: {self.builder.describe()}")
            timer.start()
            code = self.builder.run(running, output)
        except SOSError as exc:
            if running.stop.reason is None:
                self._log(build.id, f"FAILED: {exc.message}")
                with self._lock:
                    self._finish(build, "failed", exc.message)
                return
        finally:
            timer.cancel()
        stopped = running.stop.reason
        if stopped is not None:
            self._log(build.id, f"stopped: {stopped[1]}")
            with self._lock:
                self._finish(build, stopped[0], stopped[1])
            return
        if outcome is None or code != 0:
            if error is None and code == 0:
                error = (
                    "the builder ended without saying what it built (its output was cut "
                    "short); see the build's log, and build again"
                )
            with self._lock:
                self._finish(build, "failed", error or f"the builder exited with code {code}")
            return
        self._publish(build, token, running.dir / "work", outcome)

    def _publish(self, build: Build, token: Token, work: Path, outcome: dict[str, Any]) -> None:
        log_text = str(outcome.pop("log_text", ""))
        self._log(build.id, "== the build tools' log\n" + log_text.rstrip())
        inside = Path(str(outcome.get("path") or ""))
        artifact = work / "out" / inside.name
        if not inside.name or not artifact.is_file():
            reason = (
                f"the build made {inside.name or 'an artifact'!r} but it never reached the "
                "server (the builder left no such file for it); nothing was stored: build again"
            )
            self._log(build.id, f"FAILED: {reason}")
            with self._lock:
                self._finish(build, "failed", reason)
            return
        fields = {k: outcome[k] for k in ArtifactMetadata.model_fields if k in outcome}
        meta = ArtifactMetadata.model_validate(fields)
        log_digest = "sha256:" + hashlib.sha256(self.log_file(build.id).read_bytes()).hexdigest()
        extra = dict(meta.extra)
        provenance = dict(extra.get("provenance") or {})
        provenance.update(
            source_digest=build.source_digest,
            builder={
                "kind": "remote",
                "where": self.builder.isolation,
                "build": build.id,
                "interpreter": self.builder.interpreter()
                if meta.language == "python"
                else meta.runtime_version,
            },
            log_digest=log_digest,
        )
        extra["provenance"] = provenance
        meta = meta.model_copy(update={"extra": extra, "created_by": token.name})
        try:
            if self.publish is None:
                raise SOSError("this server has no artifact store to publish builds to")
            stored = self.publish(build, artifact, meta.model_dump(mode="json"), token)
        except SOSError as exc:
            self._log(build.id, f"FAILED: {exc.message}")
            with self._lock:
                self._finish(
                    build, "failed", f"the artifact was built but not stored: {exc.message}"
                )
            return
        self._event(
            build.id,
            event="output",
            line=f"stored {stored.name} {stored.version} ({stored.digest})",
        )
        lock, warnings = self._kept_lock(build.id, outcome)
        with self._lock:
            build.artifact, build.lock, build.warnings = stored, lock, list(warnings)
            self._finish(build, "succeeded", None)
            build.log_digest = log_digest
            self._save(build)
            key = self._reuse_key(build)
            if key is not None:
                self._reuse[key] = build.id
                self._save_reuse()

    def _kept_lock(
        self, build_id: str, outcome: dict[str, Any]
    ) -> tuple[BuildLock | None, tuple[str, ...]]:
        """The lock file the build installed from (the worker's ``lock``:
        ``sos.build._remote_worker.lock_report``), its text written beside the record, and
        what the build said (``warnings``)."""
        said = tuple(str(w) for w in outcome.get("warnings") or [])[:20]
        found = outcome.get("lock")
        if not isinstance(found, dict):
            return None, said
        try:
            lock = BuildLock.model_validate({k: found.get(k) for k in BuildLock.model_fields})
        except ValueError as exc:
            self._log(build_id, f"the build's lock file is not recorded: {exc}")
            return None, said
        text = found.get("text")
        data = text.encode("utf-8") if isinstance(text, str) else None
        if data is None or len(data) > MAX_LOCK_BYTES:
            if lock.written:
                said += (
                    f"the server does not keep the {lock.file} it wrote ({lock.size} bytes; "
                    f"it keeps UTF-8 lock files up to {MAX_LOCK_BYTES} bytes): `sos build` "
                    "here writes it",
                )
            return None, said
        if "sha256:" + hashlib.sha256(data).hexdigest() != lock.sha256:
            self._log(build_id, f"the build's {lock.file} is not recorded: its digest differs")
            return None, said
        self.lock_file(build_id).write_bytes(data)
        return lock, said

    def _log(self, build_id: str, text: str) -> None:
        with self.log_file(build_id).open("a", encoding="utf-8") as handle:
            handle.write(text.rstrip("\n") + "\n")
        for line in text.splitlines():
            self._event(build_id, event="output", line=line)

    def _output(self, build: Build, line: str) -> None:
        self._log(build.id, line)

    def _step_event(self, build: Build, event: dict[str, Any]) -> None:
        kind = event["event"]
        now = _now()
        with self._lock:
            if kind == "plan":
                build.steps = [BuildStep(name=str(s)) for s in event.get("steps", [])]
            elif kind in ("begin", "end"):
                name = str(event.get("step", ""))
                step = next((s for s in build.steps if s.name == name), None)
                if step is None:
                    step = BuildStep(name=name)
                    build.steps.append(step)
                if kind == "begin":
                    step.state, step.started_at = "running", now
                else:
                    step.state, step.finished_at = "done", now
                    step.detail = str(event.get("detail", ""))
            self._save(build)
        if kind == "output":
            line = str(event.get("line", ""))
            with self.log_file(build.id).open("a", encoding="utf-8") as handle:
                handle.write("  | " + line + "\n")
        elif kind == "begin":
            with self.log_file(build.id).open("a", encoding="utf-8") as handle:
                handle.write(f"== {event.get('step', '')}\n")
        self._event(build.id, **event)


def _parse(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _may_see(token: Token, build: Build) -> bool:
    return (
        token.role == "admin"
        or build.created_by == token.name
        or (build.team is not None and build.team == token.team)
    )


def _may_change(token: Token, build: Build) -> None:
    if token.role == "admin":
        return
    if token.role == "reader":
        raise PermissionDeniedError(
            f"token {token.name!r} is read-only (role reader) and cannot cancel builds",
            details={"role": token.role},
        )
    if build.created_by != token.name and build.team != token.team:
        raise PermissionDeniedError(
            f"build {build.id} belongs to team {build.team!r}; token {token.name!r} cannot "
            "cancel it"
        )


# --------------------------------------------------------------------------- plug-in


def _publisher(
    state: ServerState,
) -> Callable[[Build, Path, dict[str, Any], Token], ArtifactMetadata]:
    def publish(build: Build, file: Path, fields: dict[str, Any], token: Token) -> ArtifactMetadata:
        from sos.server.artifacts import store_file

        return store_file(state, file, fields, token)

    return publish


def _stored(state: ServerState) -> Callable[[ArtifactMetadata, Token], ArtifactMetadata | None]:
    def stored(meta: ArtifactMetadata, token: Token) -> ArtifactMetadata | None:
        from sos.server.artifacts import stored_for

        return stored_for(state, meta, token)

    return stored


def configure(state: ServerState) -> None:
    """Start-up hook of this plug-in: the build service, on the backend's builder (its
    environment is made at the first build): a Kubernetes Job on Knative, the sandboxed
    local builder otherwise."""
    root = state.settings.data_dir / "builds"

    def runner() -> BuildRunner | None:
        return state.backend.build_runner(root) if state.backend is not None else None

    service = BuildService(
        root, builder_for=runner, publish=_publisher(state), stored=_stored(state)
    )
    state.extra["builds"] = service
    state.body_keys.append(service.opens)


def _service(request: Request) -> BuildService:
    state = request.app.state.sos
    service = state.extra.get("builds")
    if service is None:
        configure(state)
        service = state.extra["builds"]
    assert isinstance(service, BuildService)
    return service


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        service = app.state.sos.extra.get("builds")
        if isinstance(service, BuildService):
            await run_in_threadpool(service.close)


router = APIRouter(tags=["builds"], responses=ERROR_RESPONSES, lifespan=_lifespan)


@router.post(
    "/builds",
    status_code=status.HTTP_201_CREATED,
    summary="Upload a project's source and queue its build",
    openapi_extra=BINARY_BODY,
)
async def start_build(
    request: Request,
    token: Principal,
    type: Annotated[str | None, Query(max_length=32, description="python, node, go, jvm")] = None,
    frozen: Annotated[bool, Query(description="Build only from committed lock files")] = False,
    project: Annotated[
        str, Query(max_length=500, description="The project's directory in the source")
    ] = ".",
    no_cache: Annotated[
        bool, Query(description="Build again even if this source was built before")
    ] = False,
    reuse_only: Annotated[
        bool,
        Query(
            description="Send no body: answer with the earlier build of this source by "
            "this builder (a new, finished Build), or 404 to say it must be uploaded"
        ),
    ] = False,
    x_sos_source_digest: Annotated[
        str | None, Header(description="sha256:<hex> of the body")
    ] = None,
    content_length: Annotated[int | None, Header()] = None,
) -> Build:
    if token.role == "reader":
        raise PermissionDeniedError(
            f"token {token.name!r} is read-only (role reader) and cannot start builds; ask "
            "an admin for a writer token",
            details={"role": token.role},
        )
    if not x_sos_source_digest:
        raise ValidationError("X-SOS-Source-Digest is missing: send the sha256 of the source")
    expected = check_digest(x_sos_source_digest)
    safe_project_dir(project)
    service = _service(request)
    service.check(type)
    limit = service.max_source
    if content_length is not None and content_length > limit:
        raise PayloadTooLargeError(
            f"the source is {content_length} bytes, above the server's limit of {limit} bytes "
            "(SOS_MAX_SOURCE_BYTES); list data and build output in .sosignore",
            details={"limit": limit, "size": content_length},
        )
    if reuse_only:  # no upload: the build of this source, if this builder made one
        reused = await run_in_threadpool(
            service.reuse, expected, token, type=type, frozen=frozen, project=project
        )
        if reused is None:
            raise NotFoundError(
                "this server has not built this source with its builder: upload it",
                details={"source_digest": expected},
            )
        return reused
    uploads = service.root / "uploads"
    uploads.mkdir(exist_ok=True)
    target = uploads / f"{uuid.uuid4().hex}.tar.gz"
    try:
        await _receive(request, target, limit, "the source", "SOS_MAX_SOURCE_BYTES")
        digest = await run_in_threadpool(source_digest, target, max_bytes=limit * UNPACK_RATIO)
        if digest != expected:
            raise ValidationError(
                f"the source uploaded is {digest}, not {expected}: it was cut short "
                "or changed on the way; try again"
            )
        return await run_in_threadpool(
            service.submit,
            target,
            digest,
            token,
            type=type,
            frozen=frozen,
            project=project,
            use_cache=not no_cache,
        )
    finally:
        target.unlink(missing_ok=True)


@router.get("/builds", summary="Builds, newest first")
def list_builds(
    request: Request,
    token: Principal,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many")] = 100,
) -> list[Build]:
    return _service(request).list(token)[:limit]


@router.get("/builds/{build_id}", summary="One build: state, steps, artifact")
def get_build(request: Request, token: Principal, build_id: str) -> Build:
    return _service(request).get(build_id, token)


@router.get(
    "/builds/{build_id}/lock",
    response_class=Response,
    summary="The lock file a build installed from (Build.lock)",
    responses={200: {"content": {"text/plain": {}}}},
)
def build_lock(request: Request, token: Principal, build_id: str) -> PlainTextResponse:
    return PlainTextResponse(_service(request).lock_text(build_id, token))


@router.post("/builds/{build_id}/cancel", summary="Cancel a queued or running build")
async def cancel_build(request: Request, token: Principal, build_id: str) -> Build:
    return await run_in_threadpool(_service(request).cancel, build_id, token)


@router.get(
    "/builds/{build_id}/log",
    response_class=StreamingResponse,
    summary="The build's events as NDJSON (follow: until it ends)",
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def build_log(
    request: Request,
    token: Principal,
    build_id: str,
    follow: Annotated[bool, Query(description="Keep streaming until the build ends")] = False,
) -> StreamingResponse:
    service = _service(request)
    service.get(build_id, token)  # 404 unless this token may see it
    events = service.events_file(build_id)

    async def stream() -> AsyncIterator[bytes]:
        offset = 0
        while True:
            done = service.is_done(build_id)
            chunk = await run_in_threadpool(_read_from, events, offset)
            if chunk:
                cut = chunk.rfind(b"\n") + 1
                if cut:
                    offset += cut
                    yield chunk[:cut]
                    continue
                # one event longer than a chunk (a long line of output): it whole, once written
                whole = await run_in_threadpool(_read_line, events, offset)
                if whole:
                    offset += len(whole)
                    yield whole
                    continue
            if done or not follow:
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.05)

    return StreamingResponse(stream(), media_type="application/x-ndjson")


async def _receive(request: Request, target: Path, limit: int, what: str, setting: str) -> int:
    """Stream the request's body to ``target``, refusing it past ``limit`` bytes (413)."""
    size = 0
    with target.open("wb") as handle:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    f"{what} is above the server's limit of {limit} bytes ({setting})",
                    details={"limit": limit},
                )
            await run_in_threadpool(handle.write, chunk)
    return size


def _read_line(path: Path, offset: int) -> bytes:
    """The line that starts at ``offset``, with its newline; empty until it is all written."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            line = handle.readline()
    except FileNotFoundError:
        return b""
    return line if line.endswith(b"\n") else b""


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(CHUNK_SIZE)
    except FileNotFoundError:
        return b""


# ---- the routes a builder elsewhere calls back (a Kubernetes Job): the build's own key

BuildKey = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
#: what an artifact upload may be called (the artifact and its metadata file)
_UPLOAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
MAX_UPLOADS = 4


def _opened(request: Request, build_id: str, key: BuildKey) -> BuildRun:
    return _service(request).running(build_id, key.credentials if key is not None else "")


@router.get(
    "/builds/{build_id}/source",
    response_class=FileResponse,
    summary="A running build's source (for its builder; the build's key)",
)
def build_source(request: Request, build_id: str, key: BuildKey) -> FileResponse:
    run = _opened(request, build_id, key)
    return FileResponse(run.dir / "source.tar.gz", media_type="application/gzip")


@router.get(
    "/builds/{build_id}/toolkit.tar.gz",
    response_class=FileResponse,
    summary="SOS's build code for a running build's builder (the build's key)",
)
def build_toolkit(request: Request, build_id: str, key: BuildKey) -> FileResponse:
    _opened(request, build_id, key)
    archive = _service(request).builder.toolkit_archive()
    if archive is None:
        raise NotFoundError("this server's builders have SOS's build code already")
    return FileResponse(archive, media_type="application/gzip")


@router.put(
    "/builds/{build_id}/artifact/{name}",
    summary="A running build's builder uploads what it made (the build's key)",
    openapi_extra=BINARY_BODY,
)
async def upload_build_output(
    request: Request,
    build_id: str,
    name: str,
    key: BuildKey,
    content_length: Annotated[int | None, Header()] = None,
) -> dict[str, Any]:
    from sos.server.artifacts import max_artifact_bytes

    run = _opened(request, build_id, key)
    if not _UPLOAD_NAME.fullmatch(name):
        raise ValidationError(
            f"{name!r} is not a file name a build makes (letters, digits, '.', '_', '+', '-')"
        )
    out = run.out_dir
    if not out.is_dir():  # its runner had not made it, or the build has just ended
        raise ConflictError(f"build {build_id} takes no upload now", details={"id": build_id})
    if len(list(out.iterdir())) >= MAX_UPLOADS and not (out / name).exists():
        raise ValidationError(f"a build uploads at most {MAX_UPLOADS} files")
    limit = max_artifact_bytes()
    if content_length is not None and content_length > limit:
        raise PayloadTooLargeError(
            f"{name} is {content_length} bytes, above the limit of {limit} bytes "
            "(SOS_MAX_ARTIFACT_BYTES)",
            details={"limit": limit, "size": content_length},
        )
    target = out / f".{name}.part"
    try:
        size = await _receive(request, target, limit, name, "SOS_MAX_ARTIFACT_BYTES")
        target.replace(out / name)
    finally:
        target.unlink(missing_ok=True)
    return {"name": name, "size": size}
