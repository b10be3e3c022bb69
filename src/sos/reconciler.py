"""The reconciler: desired state from the store -> backend; observed state -> status.

Level-based, like Knative's: it never replays events, it looks at the whole desired state of
a service each time and asks the backend to make it true. It runs a service

- whenever the control plane changes it (``notify``),
- again shortly after, while the service is still converging (revisions starting up),
- at start-up and every ``resync_seconds`` for all services,

and deletes from the backend what the store no longer has (deleted services, and orphans
found after a restart). A backend error becomes the service's status reason and a retry with
backoff; it never stops the loop. At most one reconcile per service runs at a time.

``compute_status`` is a pure function (desired + observed -> status), tested as a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from pydantic import BaseModel

from sos.models import (
    Condition,
    RevisionStatus,
    ServiceStatus,
    TrafficTarget,
    revision_parts,
)
from sos.runtime.base import Backend, DesiredService, ObservedService

__all__ = ["Reconciler", "compute_status"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
StatusWriter = Callable[[str, ServiceStatus, Mapping[str, RevisionStatus]], bool]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _condition(
    previous: list[Condition],
    type_: str,
    ok: bool,
    reason: str | None,
    message: str | None,
    now: datetime,
) -> Condition:
    status = "True" if ok else "False"
    before = next((c for c in previous if c.type == type_), None)
    since = before.last_transition_time if before and before.status == status else now
    return Condition(
        type=type_, status=status, reason=reason, message=message, last_transition_time=since
    )


def _short(rev_id: str) -> str:
    return revision_parts(rev_id)[1]


def compute_status(
    desired: DesiredService,
    observed: ObservedService | None,
    error: str | None,
    now: datetime,
) -> tuple[ServiceStatus, dict[str, RevisionStatus]]:
    """The status to record for a service and its revisions after one reconcile."""
    revisions: dict[str, RevisionStatus] = {}
    generation = desired.service.resource_version  # the spec this status is about
    for revision in desired.revisions:
        assert revision.id is not None
        before = revision.status
        obs = observed.revisions.get(revision.id) if observed else None
        if obs is None:
            if error is None and observed is not None:
                revisions[revision.id] = RevisionStatus(
                    reason="Pending",
                    message="the backend has not started this revision yet",
                    conditions=[
                        _condition(before.conditions, "Ready", False, "Pending", None, now)
                    ],
                    observed_at=now,
                    observed_generation=generation,
                )
            continue  # keep the last known status when the backend could not be asked
        active = obs.instances.ready > 0
        if before.failed and not obs.failed and not active:
            # a failure is remembered (across restarts and scale-to-zero) until an instance
            # of the revision serves again: it never turns back into "Ready" by itself
            obs = dataclasses.replace(
                obs,
                ready=False,
                failed=True,
                reason=before.reason or "Failed",
                message=before.message,
            )
        revisions[revision.id] = RevisionStatus(
            ready=obs.ready,
            reason=obs.reason,
            message=obs.message,
            failed=obs.failed,
            instances=obs.instances,
            limits=obs.limits,
            url=obs.url,
            conditions=[
                _condition(before.conditions, "Ready", obs.ready, obs.reason, obs.message, now),
                _condition(
                    before.conditions,
                    "Active",
                    active,
                    "Serving" if active else "NoInstances",
                    None,
                    now,
                ),
            ],
            observed_at=now,
            observed_generation=generation,
        )

    def rev_ready(rev_id: str) -> RevisionStatus | None:
        if rev_id in revisions:
            return revisions[rev_id]
        return next((r.status for r in desired.revisions if r.id == rev_id), None)

    routes = desired.traffic.routes if desired.traffic else []
    tag_urls = observed.tag_urls if observed else {}
    traffic = [
        TrafficTarget(
            revision=r.revision,
            percent=r.percent,
            tag=r.tag,
            url=tag_urls.get(r.tag) if r.tag else None,
        )
        for r in routes
    ]
    not_ready = [
        r for r in routes if r.percent > 0 and not getattr(rev_ready(r.revision), "ready", False)
    ]
    ready_ids = [
        r.id for r in desired.revisions if r.id and getattr(rev_ready(r.id), "ready", False)
    ]
    latest_ready = ready_ids[-1] if ready_ids else None  # revisions come in number order

    reason: str | None
    message: str | None
    if error is not None:
        ready, reason, message = False, "BackendError", error
    elif not routes:
        ready, reason, message = False, "NoTraffic", "create a revision to give the service traffic"
    elif observed is None:
        ready, reason, message = False, "Pending", "the backend has not reported this service yet"
    elif not_ready:
        first = not_ready[0]
        status = rev_ready(first.revision)
        why = status.reason if status else "Pending"
        failed = bool(status and status.failed)
        ready = False
        reason = "RevisionFailed" if failed else "RevisionNotReady"
        message = (
            f"revision {_short(first.revision)} ({first.percent}% of traffic) is not ready: "
            f"{why}" + (f" ({status.message})" if status and status.message else "")
        )
    elif not observed.ready:
        ready, reason, message = False, observed.reason, observed.message
    else:
        ready, reason, message = True, "Ready", None

    before_service = desired.service.status
    routes_ready = bool(routes) and not not_ready
    service_status = ServiceStatus(
        ready=ready,
        reason=reason,
        message=message,
        url=observed.url if observed else before_service.url,
        traffic=traffic,
        latest_ready_revision=latest_ready,
        conditions=[
            _condition(before_service.conditions, "Ready", ready, reason, message, now),
            _condition(
                before_service.conditions,
                "RoutesReady",
                routes_ready,
                "AllRoutedRevisionsReady" if routes_ready else "RoutedRevisionNotReady",
                None,
                now,
            ),
        ],
        observed_at=now,
        observed_generation=generation,
    )
    return service_status, revisions


def _differs(before: BaseModel, after: BaseModel) -> bool:
    """True when a status changed in more than the time it was observed."""
    return before.model_dump(exclude={"observed_at"}) != after.model_dump(exclude={"observed_at"})


def _settled(desired: DesiredService, status: Mapping[str, RevisionStatus]) -> bool:
    """True when waiting longer will not change anything (all routable revisions decided)."""
    routable = desired.routable()
    for rev_id in routable:
        rev = status.get(rev_id)
        if rev is None or not (rev.ready or rev.failed):
            return False
    return True


class Reconciler:
    def __init__(
        self,
        backend: Backend,
        *,
        desired: Callable[[str], DesiredService | None],
        service_names: Callable[[], list[str]],
        write_status: StatusWriter,
        resync_seconds: float = 30.0,
        converge_seconds: float = 0.25,
        clock: Clock = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self._desired = desired
        self._service_names = service_names
        self._write_status = write_status
        self.resync_seconds = resync_seconds
        self.converge_seconds = converge_seconds
        self.clock = clock  # what status says (wall time)
        self.monotonic = monotonic  # when to resync and retry (never jumps)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str | None, float] = {}
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._failures: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await self.backend.start()
        await self.delete_orphans()
        self._pending[None] = 0.0  # reconcile everything once at start-up
        self._task = asyncio.create_task(self._run(), name="sos-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._running.values()):
            task.cancel()
        for task in list(self._running.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.backend.close()

    def notify(self, name: str | None = None, delay: float = 0.0) -> None:
        """Ask for ``name`` (None: every service) to be reconciled. Safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running_here = asyncio.get_running_loop() is loop
        except RuntimeError:
            running_here = False
        if running_here:
            self._enqueue(name, delay)
        else:
            loop.call_soon_threadsafe(self._enqueue, name, delay)

    def _enqueue(self, name: str | None, delay: float) -> None:
        due = self.monotonic() + delay
        self._pending[name] = min(self._pending.get(name, due), due)
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        next_resync = self.monotonic() + self.resync_seconds
        while True:
            now = self.monotonic()
            if now >= next_resync:
                self._pending[None] = now
                next_resync = now + self.resync_seconds
            for name, due in list(self._pending.items()):
                if due > now:
                    continue
                del self._pending[name]
                if name is None:
                    try:
                        names = await asyncio.to_thread(self._service_names)
                    except Exception:
                        log.exception("cannot list services to reconcile; retrying")
                        self._pending[None] = now + 1.0
                        continue
                    for each in names:
                        self._start(each)
                else:
                    self._start(name)
            wait = min([next_resync, *self._pending.values()]) - self.monotonic()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.0))

    def _start(self, name: str) -> None:
        if name in self._running:
            self._dirty.add(name)
            return
        task = asyncio.create_task(self._guarded(name), name=f"reconcile-{name}")
        self._running[name] = task

    async def _guarded(self, name: str) -> None:
        try:
            delay = await self.reconcile(name)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug, not a backend error: log it and try again later
            log.exception("reconciling service %s failed", name)
            delay = self._backoff(name)
        finally:
            self._running.pop(name, None)
        if name in self._dirty:
            self._dirty.discard(name)
            self._enqueue(name, 0.0)
        elif delay is not None:
            self._enqueue(name, delay)

    def _backoff(self, name: str) -> float:
        failures = self._failures.get(name, 0) + 1
        self._failures[name] = failures
        return float(min(self.converge_seconds * 2**failures, self.resync_seconds))

    # ------------------------------------------------------------------ one service

    async def reconcile(self, name: str) -> float | None:
        """Reconcile one service now; returns when to look again (None: at the next resync).

        Reconciles of one service never overlap (the loop's and a direct call's): each reads
        the status the previous one wrote, so an unchanged status is not written twice.
        """
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            return await self._reconcile(name)

    async def _reconcile(self, name: str) -> float | None:
        desired = await asyncio.to_thread(self._desired, name)
        if desired is None:
            log.info("service %s is gone from the store; deleting it from the backend", name)
            await self.backend.delete(name)
            self._failures.pop(name, None)
            return None
        error: str | None = None
        observed: ObservedService | None = None
        try:
            await self.backend.apply(desired)
            observed = await self.backend.observe(name)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
            log.warning("backend %s failed on service %s: %s", self.backend.name, name, error)
        service_status, revision_status = compute_status(desired, observed, error, self.clock())
        changed = {
            rev.id: revision_status[rev.id]
            for rev in desired.revisions
            if rev.id in revision_status and _differs(rev.status, revision_status[rev.id])
        }
        if changed or _differs(desired.service.status, service_status):
            await asyncio.to_thread(self._write_status, name, service_status, changed)
        if error is not None:
            return self._backoff(name)
        self._failures.pop(name, None)
        if observed is None or not _settled(desired, revision_status):
            return self.converge_seconds
        return None

    async def delete_orphans(self) -> list[str]:
        """Delete from the backend every service the store does not have (after a restart)."""
        try:
            running = await self.backend.list_services()
            known = set(await asyncio.to_thread(self._service_names))
        except Exception:
            log.exception("cannot compare backend and store to find orphans")
            return []
        orphans = sorted(set(running) - known)
        for name in orphans:
            log.info("deleting orphan service %s from the backend", name)
            try:
                await self.backend.delete(name)
            except Exception:
                log.exception("cannot delete orphan service %s", name)
        return orphans
