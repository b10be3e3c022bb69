"""The process supervisor: instances of revisions as processes, kept at the wanted count.

Each instance is started per ``sos.launch`` (argv + env) on a free port, in its own process
group, with its stdout/stderr in files under the data dir (``sos.runtime.local.logs``) and
limits applied as ``sos.runtime.local.limits`` allows. ``step()`` is called a few times a
second by the backend and does one round of work for every revision:

- reap instances that exited (a start that never got ready counts as a failed start);
- probe readiness (fast while starting, every ``period_seconds`` after) and liveness;
  ``failure_threshold`` failures in a row take an instance out of the routing table
  (readiness) or replace it (liveness);
- start instances up to the wanted count, with exponential backoff after failed starts
  (0.5 s doubling to 30 s); a revision whose starts fail ``CRASH_LOOP_STARTS`` times in a
  row, or that is not ready ``startup_timeout`` seconds after a start, is marked *failed*
  with the reason and its last log lines (it keeps being retried while it is wanted);
- stop instances above the wanted count: out of the routing table first, then wait until
  their in-flight requests are done, then SIGTERM to the process group, SIGKILL after
  ``stop_grace`` seconds.

Every instance is recorded (id, pid, port, start time, revision) in ``instances.json``
under the runtime dir, rewritten atomically on each change. ``adopt()`` reads it back after
a server restart: an instance whose pid is alive and whose environment carries its
``SOS_INSTANCE`` id is adopted; records that do not match are dropped; processes that carry
this runtime's marker but no adoptable record (strays) are killed. Nothing is started
twice and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sos.errors import ValidationError
from sos.launch import launch_command, launch_env
from sos.models import ArtifactMetadata, Revision, revision_parts
from sos.runtime.local import procs
from sos.runtime.local.limits import Limiter, Limits
from sos.runtime.local.logs import LogStore
from sos.runtime.local.network import (
    APP_PORT,
    ROUTER_PORT_INSIDE,
    Attached,
    Network,
    NetworkError,
)
from sos.runtime.local.probes import probe
from sos.runtime.local.sandbox import MAX_FILE_BYTES, Sandbox

__all__ = ["CRASH_LOOP_STARTS", "Instance", "RevisionRuntime", "Supervisor"]

log = logging.getLogger(__name__)

CRASH_LOOP_STARTS = 3
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
STARTUP_PROBE_INTERVAL = 0.05
_ADDRESS_IN_USE = ("address already in use", "eaddrinuse", "bind: address")
#: what an app that could not allocate memory prints (Python, Go, Node, C++, the JVM)
_OUT_OF_MEMORY = (
    "memoryerror",
    "out of memory",
    "cannot allocate memory",
    "bad_alloc",
    "outofmemoryerror",
)


@dataclass
class Instance:
    id: str
    service: str
    revision: str
    pid: int
    port: int
    started_at: float  # wall clock, for people and the state file
    started: float  # monotonic, for timeouts
    process: subprocess.Popen[bytes] | None = None
    state: str = "starting"  # starting, ready, unready, draining, stopping
    ever_ready: bool = False
    ready_failures: int = 0
    live_failures: int = 0
    next_probe: float = 0.0
    probing: bool = False
    stop_deadline: float | None = None
    exit_note: str | None = None
    #: the processes copying its stdout and stderr into their files (ours, to reap)
    writers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: when its exit was first seen (its writers get a moment to copy its last lines)
    exit_seen: float | None = None
    #: its network of its own (a private network), else None (the host's)
    network: Attached | None = None

    def record(self) -> dict[str, object]:
        return {
            "id": self.id,
            "service": self.service,
            "revision": self.revision,
            "pid": self.pid,
            "port": self.port,
            "started_at": self.started_at,
            **(self.network.record() if self.network is not None else {}),
        }


@dataclass
class RevisionRuntime:
    """What the supervisor runs of one revision."""

    revision: Revision
    #: (the app's port, the sandbox's network descriptors or None) -> argv and environment
    argv: Callable[[int, tuple[int, int] | None], tuple[list[str], dict[str, str]]] | None
    language: str = "python"
    limits: Limits = field(default_factory=Limits)
    wanted: int = 0
    instances: dict[str, Instance] = field(default_factory=dict)
    failed_starts: int = 0
    next_start: float = 0.0
    failed: bool = False
    reason: str = "Deploying"
    message: str | None = None
    #: why no instance may start yet (the artifact is being prepared), else None
    hold: str | None = None
    #: some instance of it passed its readiness probe (kept across restarts): only then
    #: may it be "Ready" at zero instances
    ever_ready: bool = False
    #: instances started (a revision never started, initial_scale 0, has nothing to wait for)
    starts: int = 0
    #: the last readiness probe of a starting instance, for people: what, and how often
    probe_note: str | None = None
    probe_failures: int = 0
    probe_logged: float = -1e9

    @property
    def id(self) -> str:
        assert self.revision.id is not None
        return self.revision.id

    @property
    def service(self) -> str:
        return self.revision.service or revision_parts(self.id)[0]

    def live(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.state not in ("draining", "stopping")]

    def ready(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.state == "ready"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


#: what an instance inherits from the server's environment: what programs need to run
#: (and numeric-library settings of this machine), never the server's own secrets
INHERITED_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "JAVA_HOME",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
INHERITED_PREFIXES = ("LC_", "OPENBLAS_", "OMP_", "MKL_")


def inherited_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        k: v for k, v in environ.items() if k in INHERITED_ENV or k.startswith(INHERITED_PREFIXES)
    }


def runtime_for(
    revision: Revision,
    artifact: ArtifactMetadata,
    path: Path,
    *,
    marker: str,
    limiter: Limiter,
    sandbox: Sandbox,
    host: str = "127.0.0.1",
    secrets: Callable[[], Mapping[str, str]] = dict,
) -> RevisionRuntime:
    """A runtime that starts ``revision`` from the artifact file at ``path``, in ``sandbox``
    (Python artifacts on its clean interpreter, unpacked once per service), with the values
    of the secrets it uses as ``secrets()`` gives them when each instance starts."""
    # the revision's own memory limit, else the server's default (its spec keeps None)
    memory = limiter.applied(revision.resources).memory
    limits = limiter.limits(revision.resources)
    base = inherited_env(os.environ)
    base["SOS_RUNTIME"] = marker
    service = revision.service or ""
    command = launch_command(
        artifact, sandbox.artifact_path(path), memory=memory, python=sandbox.python_executable()
    )

    config = (
        sandbox.config_dir(service, revision.id or "", revision.files) if revision.files else None
    )

    def argv(port: int, network: tuple[int, int] | None) -> tuple[list[str], dict[str, str]]:
        # in a network of its own, the app listens on its own loopback
        inside = host if network is None else "127.0.0.1"
        env = launch_env(
            revision, port=port, host=inside, base=base, secrets=secrets(), memory=memory
        )
        if network is not None:  # other services, through the router forwarded in
            env["SOS_ROUTER_URL"] = f"http://127.0.0.1:{ROUTER_PORT_INSIDE}"
        placed = sandbox.wrap(
            service,
            command,
            env,
            path,
            language=artifact.language,
            config=config,
            network=network,
        )
        return limiter.wrap(placed.argv, limits, artifact.language), placed.env

    return RevisionRuntime(revision, argv, artifact.language, limits)


class Supervisor:
    def __init__(
        self,
        runtime_dir: Path,
        *,
        logs: LogStore,
        limiter: Limiter | None = None,
        network: Network | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 60.0,
        stop_grace: float = 10.0,
        drain_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.dir = runtime_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.dir / "instances.json"
        self.marker = str(self.dir.resolve())
        self.logs = logs
        self.limiter = limiter or Limiter()
        self.network = network or Network(runtime_dir, "host")
        self.host = host
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.drain_timeout = drain_timeout
        self.clock = clock
        self.on_change = on_change or (lambda: None)
        self.revisions: dict[str, RevisionRuntime] = {}
        #: revisions deployed before (kept in the state file): a restart does not give them
        #: their initial scale again
        self.known: set[str] = set()
        #: revisions that have had a ready instance (kept in the state file): only these
        #: may be "Ready" at zero instances after a restart
        self.served: set[str] = set()
        #: deleted services whose logs were removed (their draining instances log no more)
        self.purged: set[str] = set()
        #: instances found at start-up, waiting for their revision to be deployed again
        self.adopted: dict[str, list[Instance]] = {}
        self.in_flight: Callable[[str], int] = lambda instance: 0
        self._probes: set[asyncio.Task[None]] = set()
        self._saved = ""
        #: process groups of instances that ended, with when to kill what is left of them
        self._leftovers: dict[int, float] = {}
        self._detaching: set[asyncio.Future[None]] = set()

    # ---- revisions

    def deploy(self, runtime: RevisionRuntime) -> RevisionRuntime:
        """Start managing a revision (taking over instances adopted after a restart)."""
        existing = self.revisions.get(runtime.id)
        if existing is not None and existing.argv is not None:
            return existing
        if existing is not None:
            # a retired revision of the same id (its service was deleted and the name
            # reused, maybe by another team): its last instances go now, and the new one
            # starts clean, with none of its state
            for instance in existing.instances.values():
                instance.state = "stopping"
                self._kill(instance, signal.SIGKILL)
                self._leftovers[instance.pid] = self.clock()
                self.limiter.release(instance.id)
                self.logs.forget(instance.id)
                self._detach(instance)
        self.purged.discard(runtime.service)
        self.revisions[runtime.id] = runtime
        self.known.add(runtime.id)
        for instance in self.adopted.pop(runtime.id, []):
            runtime.instances[instance.id] = instance
            instance.next_probe = 0.0
        runtime.ever_ready = runtime.id in self.served or bool(runtime.instances)
        return runtime

    def retire(self, revision: str) -> None:
        """Stop every instance of a revision and forget it once they are gone."""
        runtime = self.revisions.get(revision)
        if runtime is not None:
            runtime.wanted = 0
            runtime.argv = None
        for instance in self.adopted.pop(revision, []):
            self._kill(instance, signal.SIGTERM)
            self._detach(instance)
        # a revision of the same id later (a deleted service's name reused) starts clean
        self.known.discard(revision)
        self.served.discard(revision)

    def services(self) -> set[str]:
        names = {r.service for r in self.revisions.values()}
        return names | {i.service for group in self.adopted.values() for i in group}

    # ---- the work loop

    async def step(self) -> None:
        now = self.clock()
        changed = False
        for group, deadline in list(self._leftovers.items()):
            if now >= deadline:
                del self._leftovers[group]
                if group in _groups_with_marker(self.marker):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(group, signal.SIGKILL)
        for runtime in list(self.revisions.values()):
            changed |= self._reap(runtime, now)
            changed |= self._check_startup(runtime, now)
            self._schedule_probes(runtime, now)
            changed |= await self._scale(runtime, now)
            changed |= self._finish_stops(runtime, now)
            if runtime.argv is None and not runtime.instances:
                del self.revisions[runtime.id]
                changed = True
        if changed:
            self._save()
            self.on_change()

    def _reap(self, runtime: RevisionRuntime, now: float) -> bool:
        changed = False
        for instance in list(runtime.instances.values()):
            code = _exit_code(instance)
            if code is None:
                self._check_writers(instance)
                continue
            if instance.exit_seen is None:
                instance.exit_seen = now
            if (
                any(w.poll() is None for w in instance.writers.values())
                and now < instance.exit_seen + 0.5
            ):
                continue  # its last lines are still in a pipe: what it said goes with it
            changed = True
            del runtime.instances[instance.id]
            self._detach(instance)
            # what is left of its process group (gunicorn's workers outlive a killed master)
            # finishes what it serves (the router sends it nothing more) and goes, or is killed
            self._kill(instance, signal.SIGTERM)
            self._leftovers[instance.pid] = now + self.stop_grace
            killed_for_memory = instance.state != "stopping" and self.limiter.oom_killed(
                instance.id
            )
            self.limiter.release(instance.id)
            self.logs.forget(instance.id)
            if instance.state == "stopping":
                continue
            note = instance.exit_note or _exit_text(code)
            if instance.exit_note is None and (
                killed_for_memory or self._stderr_says(instance, _OUT_OF_MEMORY)
            ):
                limit = self.limiter.memory_said(runtime.revision.resources)
                note = f"{note} (out of memory: its limit is {limit})"
            self._platform(instance, f"instance {instance.id} (pid {instance.pid}) {note}")
            if not instance.ever_ready:
                if self._port_race(runtime, instance):
                    self._platform(instance, "its port was taken meanwhile; retrying on another")
                    continue
                timed_out = instance.exit_note is not None and "not ready" in instance.exit_note
                why = f"the instance {note}" if timed_out else f"the instance {note} before ready"
                self._failed_start(runtime, now, why, at_once=timed_out)
            else:
                runtime.next_start = now  # replace at once: it was healthy before
                if not runtime.failed:  # what status says until the replacement is ready
                    runtime.message = f"instance {instance.id} {note}; replacing it"
        return changed

    def _detach(self, instance: Instance) -> None:
        """Stop an ended instance's pasta and remove its namespace file (off the loop)."""
        if instance.network is not None:
            network, instance.network = instance.network, None
            task = asyncio.get_running_loop().run_in_executor(None, self.network.detach, network)
            self._detaching.add(task)
            task.add_done_callback(self._detaching.discard)

    def _check_writers(self, instance: Instance) -> None:
        """Say so, once, when a running instance's output is no longer kept (it wrote a
        file's worth faster than the logs rotate: its writer hit the size limit)."""
        for stream, writer in list(instance.writers.items()):
            if writer.poll() is not None:
                del instance.writers[stream]
                self._platform(
                    instance,
                    f"its {stream} is no longer logged: it wrote more than "
                    f"{MAX_FILE_BYTES // 2**20} MiB faster than the logs rotate "
                    "(writes to it now fail with a broken pipe)",
                )

    def _stderr_says(self, instance: Instance, markers: tuple[str, ...]) -> bool:
        """Does the end of an ended instance's stderr say one of ``markers`` (lower case)?"""
        last = self.logs.stderr_tail(instance.service, instance.revision, instance.id).lower()
        return any(marker in last for marker in markers)

    def _port_race(self, runtime: RevisionRuntime, instance: Instance) -> bool:
        """Did the instance lose its port to another process between pick and bind?"""
        return not runtime.failed_starts and self._stderr_says(instance, _ADDRESS_IN_USE)

    def _failed_start(
        self, runtime: RevisionRuntime, now: float, why: str, *, at_once: bool = False
    ) -> None:
        runtime.failed_starts += 1
        delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** (runtime.failed_starts - 1))
        runtime.next_start = now + delay
        if (runtime.failed_starts >= CRASH_LOOP_STARTS or at_once) and not runtime.failed:
            # quote what explains the failure (a traceback) rather than the last boot lines
            error = None if at_once else self.logs.last_error(runtime.id)
            quoted = "its last error" if error else "its last log lines"
            lines = error or self.logs.last_lines(runtime.id, 10)
            runtime.failed = True
            runtime.reason = "NotReady" if at_once else "CrashLoop"
            runtime.message = (
                f"{why}, {runtime.failed_starts} starts in a row; {quoted}:\n" + "\n".join(lines)
            )
            log.warning("revision %s failed: %s", runtime.id, why)
        elif not runtime.failed:
            runtime.reason = "Deploying"
            runtime.message = f"{why}; retrying in {delay:g}s"

    def _check_startup(self, runtime: RevisionRuntime, now: float) -> bool:
        check = runtime.revision.health_check
        budget = check.startup_timeout_seconds
        for instance in runtime.live():
            if instance.ever_ready or instance.exit_note:
                continue
            if now - instance.started > budget + check.initial_delay_seconds:
                probe = f" (readiness probe: {runtime.probe_note})" if runtime.probe_note else ""
                instance.exit_note = (
                    f"was not ready {budget:g}s after it started, its start-up budget{probe}"
                )
                self._kill(instance, signal.SIGKILL)
        return False

    def _schedule_probes(self, runtime: RevisionRuntime, now: float) -> None:
        check = runtime.revision.health_check
        for instance in runtime.live():
            if instance.probing or now < instance.next_probe:
                continue
            if not instance.ever_ready and now - instance.started < check.initial_delay_seconds:
                continue
            instance.probing = True
            task = asyncio.ensure_future(self._probe(runtime, instance))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)

    async def _probe(self, runtime: RevisionRuntime, instance: Instance) -> None:
        check = runtime.revision.health_check
        try:
            ok, what = await probe(
                self.host, instance.port, check.readiness_probe, check.timeout_seconds
            )
            live_ok, live_what = True, ""
            if instance.ever_ready and check.liveness_probe is not None:
                if check.liveness_probe == check.readiness_probe:
                    live_ok, live_what = ok, what
                else:
                    live_ok, live_what = await probe(
                        self.host, instance.port, check.liveness_probe, check.timeout_seconds
                    )
        finally:
            instance.probing = False
        now = self.clock()
        starting = not instance.ever_ready
        instance.next_probe = now + (STARTUP_PROBE_INTERVAL if starting else check.period_seconds)
        if instance.state not in ("starting", "ready", "unready"):
            return
        changed = False
        if starting and not ok:
            changed |= self._starting_probe_failed(runtime, instance, what, now)
        if ok:
            instance.ready_failures = 0
            if instance.state != "ready":
                instance.state = "ready"
                if starting:
                    instance.ever_ready = True
                    runtime.ever_ready = True
                    runtime.failed_starts = 0
                    runtime.probe_failures, runtime.probe_note = 0, None
                    runtime.failed = False
                    runtime.reason, runtime.message = "Ready", None
                    elapsed = now - instance.started
                    self._platform(instance, f"instance {instance.id} ready after {elapsed:.2f}s")
                    self._save()  # that it served survives a restart
                changed = True
        elif not starting:
            instance.ready_failures += 1
            if instance.state == "ready" and instance.ready_failures >= check.failure_threshold:
                instance.state = "unready"
                self._platform(instance, f"readiness probe failing ({what}): no traffic for now")
                changed = True
        if instance.ever_ready and check.liveness_probe is not None:
            instance.live_failures = 0 if live_ok else instance.live_failures + 1
            if instance.live_failures >= check.failure_threshold:
                instance.exit_note = f"was killed: liveness probe failed ({live_what})"
                self._platform(
                    instance,
                    f"liveness probe failed {instance.live_failures} times "
                    f"({live_what}): replacing instance {instance.id}",
                )
                instance.state = "unready"
                self._kill(instance, signal.SIGKILL)
                changed = True
        if changed:
            self.on_change()

    def _starting_probe_failed(
        self, runtime: RevisionRuntime, instance: Instance, what: str, now: float
    ) -> bool:
        """A starting instance failed its readiness probe: say so in status (the revision's
        reason while it deploys) and, when the answer changes or every 5 s, in the logs."""
        check = runtime.revision.health_check
        runtime.probe_failures += 1
        changed_answer = what != runtime.probe_note
        runtime.probe_note = what
        waited = now - instance.started
        budget = check.startup_timeout_seconds + check.initial_delay_seconds
        if not runtime.failed:
            runtime.reason = "Deploying"
            runtime.message = (
                f"waiting for the readiness probe of instance {instance.id}: {what} "
                f"({runtime.probe_failures} attempts, {waited:.0f}s of its {budget:g}s "
                "start-up budget)"
            )
        if changed_answer or now - runtime.probe_logged >= 5.0:
            runtime.probe_logged = now
            self._platform(
                instance,
                f"readiness probe failed: {what} ({waited:.1f}s after start, attempt "
                f"{runtime.probe_failures}; the start-up budget is {budget:g}s)",
            )
        return changed_answer

    async def _scale(self, runtime: RevisionRuntime, now: float) -> bool:
        live = runtime.live()
        changed = False
        startable = runtime.argv is not None and runtime.hold is None
        if len(live) < runtime.wanted and startable and now >= runtime.next_start:
            for _ in range(runtime.wanted - len(live)):
                await self._start(runtime)
            changed = True
        elif len(live) > runtime.wanted:
            # stop the ones that serve least: not ready first, then the newest
            order = sorted(live, key=lambda i: (i.state == "ready", -i.started))
            for instance in order[: len(live) - runtime.wanted]:
                instance.state = "draining"
                instance.stop_deadline = now + self.drain_timeout
                self._platform(instance, f"instance {instance.id} draining, then stopping")
            changed = True
        if runtime.wanted == 0 and not runtime.failed and not runtime.instances:
            runtime.reason = "Ready" if runtime.reason == "Ready" else runtime.reason
        return changed

    async def _start(self, runtime: RevisionRuntime) -> None:
        assert runtime.argv is not None
        runtime.starts += 1
        instance_id = f"{runtime.id}-{secrets.token_hex(3)}"
        port = free_port(self.host)
        # in a private network the app listens on its revision's port (else 8080) inside,
        # and pasta forwards the host port to it; else the app listens on the host port
        private = self.network.private
        app_port = (runtime.revision.port or APP_PORT) if private else port
        info, release = (os.pipe(), os.pipe()) if private else ((-1, -1), (-1, -1))
        handed = (info[1], release[0]) if private else None
        try:
            argv, env = runtime.argv(app_port, handed)
        except ValidationError as exc:  # e.g. a secret it uses was deleted meanwhile
            for fd in (*info, *release) if private else ():
                os.close(fd)
            self._failed_start(runtime, self.clock(), f"could not be started: {exc}")
            return
        env["SOS_INSTANCE"] = instance_id
        files = self.logs.open(runtime.service, runtime.id, instance_id)
        pipes: list[int] = []
        writers: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for stream, file in zip(("stdout", "stderr"), files, strict=True):
                pipe, writers[stream] = LogStore.writer(file, MAX_FILE_BYTES)
                pipes.append(pipe)
            process = await asyncio.to_thread(
                subprocess.Popen,
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=pipes[0],
                stderr=pipes[1],
                start_new_session=True,
                cwd=self.dir,
                pass_fds=handed or (),
            )
        except OSError as exc:
            for fd in (info[0], release[1]) if private else ():
                os.close(fd)
            self._failed_start(runtime, self.clock(), f"could not be started: {exc}")
            self.logs.platform(runtime.service, runtime.id, instance_id, f"cannot start: {exc}")
            return
        finally:
            for file in files:
                file.close()
            for pipe in (*pipes, *(handed or ())):
                os.close(pipe)
        network: Attached | None = None
        exit_note: str | None = None
        if private:
            try:
                network = await asyncio.to_thread(
                    self.network.attach, instance_id, info[0], release[1], port, app_port
                )
            except NetworkError as exc:  # it never runs the app: stop it, and say why
                exit_note = f"could not get its network: {exc}"
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
            finally:
                os.close(info[0])
                os.close(release[1])
        now = self.clock()
        instance = Instance(
            instance_id,
            runtime.service,
            runtime.id,
            process.pid,
            port,
            time.time(),
            now,
            process=process,
            next_probe=now,
            writers=writers,
            network=network,
            exit_note=exit_note,
        )
        runtime.instances[instance_id] = instance
        self.limiter.attach(instance_id, process.pid, runtime.limits)
        not_applied = self.limiter.not_applied(runtime.limits)
        if not_applied is not None:
            self._platform(instance, not_applied)
        if not runtime.revision.resources.memory:  # the server's default decides: say so
            limit = self.limiter.memory_said(runtime.revision.resources)
            self._platform(instance, f"its memory limit: {limit}")
        where = f"port {port}" if network is None else f"port {port} -> {app_port} in its network"
        self._platform(instance, f"started instance {instance_id} (pid {process.pid}, {where})")

    def _finish_stops(self, runtime: RevisionRuntime, now: float) -> bool:
        changed = False
        for instance in list(runtime.instances.values()):
            if instance.state == "draining":
                idle = self.in_flight(instance.id) == 0
                if idle or (instance.stop_deadline is not None and now >= instance.stop_deadline):
                    instance.state = "stopping"
                    instance.stop_deadline = now + self.stop_grace
                    self._kill(instance, signal.SIGTERM)
                    changed = True
            elif instance.state == "stopping" and now >= (instance.stop_deadline or now + 1):
                self._kill(instance, signal.SIGKILL)
                instance.stop_deadline = None
        return changed

    def _kill(self, instance: Instance, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(instance.pid, sig)

    def _platform(self, instance: Instance, text: str) -> None:
        log.info("%s", text)
        runtime = self.revisions.get(instance.revision)
        if runtime is not None and runtime.argv is None and runtime.service in self.purged:
            return  # its service was deleted with its logs: nothing more goes there
        self.logs.platform(instance.service, instance.revision, instance.id, text)

    # ---- state file and adoption

    def _save(self) -> None:
        records = [
            i.record() for runtime in self.revisions.values() for i in runtime.instances.values()
        ] + [i.record() for group in self.adopted.values() for i in group]
        here = set(self.revisions) | set(self.adopted)
        self.served |= {
            rid for rid, rt in self.revisions.items() if rt.ever_ready and rt.argv is not None
        }
        known = sorted(self.known & here)
        served = sorted(self.served & here)
        text = json.dumps({"instances": records, "revisions": known, "served": served}, indent=1)
        if text == self._saved:
            return
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.state_file)
        self._saved = text

    def adopt(self) -> list[Instance]:
        """Take back the instances a previous server left running; kill the strays."""
        try:
            state = json.loads(self.state_file.read_text())
            records = state.get("instances", [])
            self.known |= {str(r) for r in state.get("revisions", [])}
            self.served |= {str(r) for r in state.get("served", [])}
        except FileNotFoundError:
            records = []
        except (ValueError, OSError, AttributeError) as exc:
            log.warning("ignoring unreadable %s: %s", self.state_file, exc)
            records = []
        adopted: list[Instance] = []
        for record in records:
            try:
                pid, instance_id = int(record["pid"]), str(record["id"])
                if procs.environ(pid).get("SOS_INSTANCE") != instance_id or not procs.alive(pid):
                    continue
                instance = Instance(
                    instance_id,
                    str(record["service"]),
                    str(record["revision"]),
                    pid,
                    int(record["port"]),
                    float(record["started_at"]),
                    self.clock(),
                    state="starting",
                    ever_ready=True,
                )
                if "netns" in record:
                    instance.network = Attached(int(record["pasta"]), Path(str(record["netns"])))
            except (KeyError, TypeError, ValueError):
                continue
            adopted.append(instance)
            self.adopted.setdefault(instance.revision, []).append(instance)
            self.logs.watch(instance.service, instance.revision, instance.id, from_start=False)
            self._platform(instance, f"re-adopted instance {instance.id} (pid {pid})")
        known = {i.pid for i in adopted}
        self.network.sweep({i.network.netns for i in adopted if i.network is not None})
        for group in _groups_with_marker(self.marker):
            if group not in known:
                log.warning("killing stray instance processes of group %d (no record)", group)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
        self._save()
        return adopted

    async def stop_all(self, grace: float = 10.0) -> None:
        """Stop every instance (for a server told to take its instances down with it)."""
        everything = [i for r in self.revisions.values() for i in r.instances.values()]
        everything += [i for group in self.adopted.values() for i in group]
        for instance in everything:
            instance.state = "stopping"
            self._kill(instance, signal.SIGTERM)
        deadline = self.clock() + grace
        # polling: adopted processes are not our children, so there is nothing to wait on
        while any(_exit_code(i) is None for i in everything) and self.clock() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for instance in everything:
            if _exit_code(instance) is None:
                self._kill(instance, signal.SIGKILL)
            if instance.network is not None:
                await asyncio.to_thread(self.network.detach, instance.network)
                instance.network = None
        self.revisions.clear()
        self.adopted.clear()
        self._save()

    async def close(self) -> None:
        for task in list(self._probes):
            task.cancel()
        self._save()


def _exit_code(instance: Instance) -> int | None:
    """The exit code of an instance that ended, else None (reaps our own children)."""
    if instance.process is not None:
        return instance.process.poll()
    return None if procs.alive(instance.pid) else -1


def _exit_text(code: int) -> str:
    # a signal's death is -N from a process we started, 128+N through the sandbox (bwrap
    # reports its app's exit as a shell does)
    signum = -code if code < 0 else code - 128 if 128 < code < 128 + 65 else None
    if signum is not None:
        with contextlib.suppress(ValueError):
            return f"exited with code {code} (killed by {signal.Signals(signum).name})"
    return f"exited with code {code}"


def _groups_with_marker(marker: str) -> set[int]:
    """Process groups with a live process whose environment says it belongs to this runtime
    (an instance's group is its first process's pid, even after that process died)."""
    found: set[int] = set()
    needle = f"SOS_RUNTIME={marker}".encode() + b"\0"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        with contextlib.suppress(OSError):
            if needle in raw + b"\0" and procs.alive(pid):
                found.add(os.getpgid(pid))
    return found
