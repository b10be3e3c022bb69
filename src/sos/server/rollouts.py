"""Rollouts that stop themselves: ``/api/v1/services/{name}/rollout``.

``POST`` starts one (``sos.Rollout``): the candidate gets the first step's share at once
(the others keep theirs in proportion, tags stay), and the server's rollout driver then
looks at it every ``SOS_ROLLOUT_TICK`` seconds (default 1):

- someone changed the traffic meanwhile: the rollout stops and leaves their route;
- the candidate failed (crash loop, never ready): roll back;
- its figures in this step (5xx share, p99, from the metrics the server samples) break a
  gate, over at least ``min_requests`` requests: roll back, at once, not at the step's end;
- the step has lasted ``step_seconds`` with ``min_requests`` served: the next step, or,
  after the 100% step, success. A step with fewer requests waits (and says so).

A rollback puts the route the rollout started from back in one write, recorded in the
history with the figures that tripped it. The state is in the database, and so is who
drives it: one server at a time, with a lease of ``SOS_ROLLOUT_LEASE`` seconds (default 15)
that it renews every third of that. Another server sharing the database takes a rollout
over only when its lease has run out (or its driver let it go on a clean shutdown), and
then restarts the current step (the figures of the interrupted step were in the other
server's memory). A waiting rollout is written only when what people see of it changes.
``decide`` is the whole policy, pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request, status
from starlette.concurrency import run_in_threadpool

from sos import traffic
from sos.errors import ConflictError, NotFoundError, ValidationError
from sos.models import (
    Rollout,
    RolloutCheck,
    RolloutStatus,
    ShadowComparison,
    Token,
    TrafficRoute,
    summary_line,
)
from sos.server.auth import Principal, can_write
from sos.server.background import running, seconds_from_env
from sos.server.core import ControlPlane
from sos.server.errors import ERROR_RESPONSES
from sos.server.metrics import MetricsSampler, series
from sos.server.routes import ServiceName
from sos.server.visibility import can_read
from sos.store.rollouts import RolloutTable, StoredRollout

__all__ = ["Decision", "RolloutDriver", "decide", "router"]

log = logging.getLogger(__name__)

DEFAULT_TICK_SECONDS = 1.0
DEFAULT_LEASE_SECONDS = 15.0


# --------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class Decision:
    """What the driver does next: ``wait``, ``advance``, ``succeed``, ``roll_back`` or
    ``stop``; ``reason`` says why (for people, into status and history)."""

    action: str
    reason: str | None = None


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def decide(
    rollout: RolloutStatus,
    check: RolloutCheck | None,
    now: datetime,
    *,
    route_now: TrafficRoute | None,
    candidate_failed: str | None = None,
) -> Decision:
    """The next move of a running rollout, from its state, the candidate's figures in the
    current step, the service's route now (any change to it by someone else, its split,
    sticky key or shadows, stops the rollout) and whether the candidate failed."""
    spec = rollout.spec
    number = traffic.revision_parts(spec.to)[1]
    if route_now is None or _as_route(route_now) != rollout.route:
        return Decision(
            "stop",
            "the traffic was changed by someone else meanwhile: the rollout stopped and left "
            "that route as it is",
        )
    if candidate_failed is not None:
        return Decision("roll_back", f"revision {number} failed: {candidate_failed}")
    at = f"at {rollout.percent}% (step {rollout.step + 1} of {len(spec.steps)})"
    if check is not None and check.requests >= max(spec.min_requests, 1):
        if (
            spec.max_error_rate is not None
            and check.error_rate is not None
            and check.error_rate > spec.max_error_rate
        ):
            return Decision(
                "roll_back",
                f"error rate {_pct(check.error_rate)} > {_pct(spec.max_error_rate)} "
                f"({check.errors} of {check.requests} requests) {at}",
            )
        if (
            spec.max_p99_ms is not None
            and check.p99_ms is not None
            and check.p99_ms > spec.max_p99_ms
        ):
            return Decision(
                "roll_back",
                f"p99 {check.p99_ms:.0f} ms > {spec.max_p99_ms:.0f} ms over "
                f"{check.requests} requests {at}",
            )
    if (now - rollout.step_started_at).total_seconds() < spec.step_seconds:
        return Decision("wait")
    served = check.requests if check is not None else 0
    if served < spec.min_requests:
        return Decision(
            "wait",
            f"waiting for {spec.min_requests} requests to revision {number} {at} "
            f"before the step can pass ({served} so far)",
        )
    if rollout.step + 1 >= len(spec.steps):
        return Decision("succeed", f"revision {number} has all the traffic: every step passed")
    return Decision("advance")


# --------------------------------------------------------------------------- the driver


def _as_route(route: TrafficRoute) -> TrafficRoute:
    """A route as the rollout keeps it: without the version it was read at."""
    return route.model_copy(update={"resource_version": None})


def _figures(
    sampler: MetricsSampler | None, rollout: RolloutStatus, now: datetime
) -> RolloutCheck | None:
    if sampler is None or not sampler.available:
        return None
    since = rollout.step_started_at.timestamp()
    found, _ = series(sampler.snapshots(rollout.service), since, revision=rollout.spec.to)
    requests = found[0].requests if found else 0
    errors = found[0].errors if found else 0
    return RolloutCheck(
        at=now,
        requests=requests,
        errors=errors,
        error_rate=round(errors / requests, 6) if requests else None,
        p99_ms=found[0].p99_ms if found else None,
    )


def _shown(rollout: RolloutStatus) -> dict[str, Any]:
    """What people see of a rollout: all of it but when it was last written and when its
    figures were read."""
    return rollout.model_dump(exclude={"updated_at": True, "last": {"at"}})


def instance_id() -> str:
    """This server instance, as it is named in the ``driver`` of the rollouts it drives."""
    return f"{socket.gethostname()[:60]}-{os.getpid()}-{secrets.token_hex(4)}"


class RolloutDriver:
    """Moves every running rollout it holds the lease of along (see the module doc)."""

    def __init__(
        self,
        control: ControlPlane,
        table: RolloutTable,
        *,
        sampler: Callable[[], MetricsSampler | None] = lambda: None,
        tick: float = DEFAULT_TICK_SECONDS,
        lease: float = DEFAULT_LEASE_SECONDS,
        name: str | None = None,
    ) -> None:
        self.control = control
        self.table = table
        self.sampler = sampler
        self.tick = tick
        if lease < 3 * tick:
            log.warning(
                "a rollout lease of %g s is under three ticks of %g s; using %g s",
                lease,
                tick,
                3 * tick,
            )
        self.lease = timedelta(seconds=max(lease, 3 * tick))
        self.name = name or instance_id()
        #: a step that began before this driver did was measured by someone else's sampler
        self.started_at = control.store.clock()

    def _token(self, rollout: RolloutStatus) -> Token:
        """Who the driver's traffic changes are recorded as."""
        now = self.control.store.clock()
        return Token(
            id="rollout", name=f"rollout ({rollout.started_by})", role="admin", created_at=now
        )

    def hold(self, stored: StoredRollout) -> StoredRollout | None:
        """``stored`` if this driver may move it now (in a worker thread): its own lease,
        renewed when a third of it has gone by, or one it took over (free, or run out),
        restarting the step if another server drove it; None: another server's."""
        now = self.control.store.clock()
        until = now + self.lease
        if stored.driver == self.name:
            if stored.lease_until is not None and stored.lease_until - now > self.lease * 2 / 3:
                return stored
            renewed = self.table.renew(stored.status.service, driver=self.name, until=until)
            return stored if renewed else None
        if stored.lease_until is not None and stored.lease_until > now:
            return None  # another server's, and it is alive
        restarted = None
        if stored.driver is not None or stored.status.step_started_at < self.started_at:
            restarted = stored.status.model_copy(
                update={
                    "step_started_at": now,
                    "updated_at": now,
                    "last": None,
                    "reason": "resumed after the server that drove it stopped or restarted: "
                    "the step starts again",
                }
            )
        claimed = self.table.claim(stored, driver=self.name, now=now, until=until, status=restarted)
        if claimed is not None and restarted is not None:
            log.info("rollout of %s taken over from %s", stored.status.service, stored.driver)
        return claimed

    def step(self, stored: StoredRollout, check: RolloutCheck | None) -> None:
        """One look at one rollout (in a worker thread: it reads and writes the store)."""
        rollout = stored.status
        store = self.control.store
        now = store.clock()
        name = rollout.service
        try:
            service = store.get_service(name)
            candidate = store.get_revision(name, rollout.spec.to)
        except NotFoundError:
            return  # deleted meanwhile: its rollout went with it
        failed = None
        if candidate.status.failed:
            why = summary_line(candidate.status.message) or "no message"
            failed = f"{candidate.status.reason}: {why}"
        decision = decide(rollout, check, now, route_now=service.traffic, candidate_failed=failed)
        token = self._token(rollout)
        update: dict[str, Any] = {"updated_at": now, "last": check}
        if decision.action == "wait":
            update["reason"] = decision.reason
            waiting = rollout.model_copy(update=update)
            if _shown(waiting) != _shown(rollout):  # else nothing anyone sees has changed
                self.table.move(waiting, expected_version=stored.version, actor=token.name)
            return
        with self.control.one_change():
            if decision.action == "advance":
                step = rollout.step + 1
                percent = rollout.spec.steps[step]
                wanted = traffic.with_share(name, rollout.from_route, rollout.spec.to, percent)
                applied = self.control.set_traffic(token, name, wanted, force=True)
                update |= {
                    "step": step,
                    "percent": percent,
                    "step_started_at": now,
                    "route": _as_route(applied),
                    "reason": None,
                }
                record = None
            elif decision.action == "roll_back":
                applied = self.control.set_traffic(token, name, rollout.from_route, force=True)
                update |= {
                    "state": "rolled_back",
                    "percent": traffic.shares(name, applied).get(rollout.spec.to, 0),
                    "route": _as_route(applied),
                    "reason": decision.reason,
                }
                record = ("rollout.rolled_back", f"rollout rolled back: {decision.reason}")
            else:  # succeed, stop
                state = "succeeded" if decision.action == "succeed" else "stopped"
                update |= {"state": state, "reason": decision.reason}
                record = (f"rollout.{state}", f"rollout {state}: {decision.reason}")
            moved = self.table.move(
                rollout.model_copy(update=update),
                expected_version=stored.version,
                actor=token.name,
                record=record,
            )
            if moved is None:  # stopped (or moved by another server) meanwhile
                raise _Lost
        if decision.action == "roll_back":
            log.warning("rollout of %s rolled back: %s", name, decision.reason)

    async def tick_once(self) -> None:
        for found in await run_in_threadpool(self.table.running):
            try:
                stored = await run_in_threadpool(self.hold, found)
                if stored is None:
                    continue
                now = self.control.store.clock()
                check = _figures(self.sampler(), stored.status, now)  # on the loop: its home
                await run_in_threadpool(self.step, stored, check)
            except _Lost:
                continue
            except Exception:  # one rollout's trouble must not stop the others
                log.warning("rollout of %s could not move", found.status.service, exc_info=True)

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.tick)
                try:
                    await self.tick_once()
                except Exception:
                    log.warning("the rollout driver failed a round; trying again", exc_info=True)
        finally:  # a clean shutdown: the other servers need not wait for the leases to run out
            try:
                self.table.release(self.name)
            except Exception:
                log.warning("the rollout driver could not let its leases go", exc_info=True)


class _Lost(Exception):
    """The rollout was moved by someone else while this step was being made."""


# --------------------------------------------------------------------------- start, read, stop


def check_shadowed(spec: Rollout, to: str, report: list[ShadowComparison] | None) -> None:
    """The ``min_overlap`` gate, before the first step: the candidate's shadowed answers
    must have ranked like the primary's, over enough compared answers."""
    if spec.min_overlap is None:
        return
    number = traffic.revision_parts(to)[1]
    if report is None:
        raise ValidationError(
            "min_overlap: this server's backend does not mirror requests, so there is no "
            "shadow report to check; start without min_overlap",
            details={"field": "min_overlap"},
        )
    pairs = [p for p in report if p.shadow == to and p.items_compared]
    needed = max(spec.min_requests, 1)
    compared = sum(p.items_compared for p in pairs)
    if compared < needed:
        raise ValidationError(
            f"min_overlap: revision {number} has {compared} compared answers with item lists "
            f"in the shadow report, fewer than {needed}; shadow it first (`sos shadow SERVICE "
            f"{int(number)}=100`), let requests come, then start the rollout",
            details={"field": "min_overlap", "compared": compared},
        )
    overlap = sum((p.overlap_at_k or 0) * p.items_compared for p in pairs) / compared
    if overlap < spec.min_overlap:
        raise ValidationError(
            f"min_overlap: revision {number}'s rankings overlap the primary's by {overlap:.3f} "
            f"(overlap@k over {compared} answers), below {spec.min_overlap:g}; it is not "
            "rolled out",
            details={"field": "min_overlap", "overlap": round(overlap, 4)},
        )


def start(
    control: ControlPlane,
    table: RolloutTable,
    token: Token,
    name: str,
    spec: Rollout,
    *,
    metrics_available: bool,
    shadow_report: list[ShadowComparison] | None = None,
) -> RolloutStatus:
    """Check ``spec`` against the service and start it: its first step's traffic and the
    stored rollout in one transaction."""
    store = control.store
    service = store.get_service(name)
    can_write(token, service.team, f"the traffic of service {name!r}")
    running = table.get(name)
    if running is not None and running.status.state == "running":
        table.refuse_running(name)
    to = control.revision_ref(name, spec.to)
    candidate = store.get_revision(name, to)
    number = traffic.revision_parts(to)[1]
    if candidate.status.failed:
        raise ConflictError(
            f"revision {number} failed ({candidate.status.reason}); a rollout would roll "
            f"back at once. See why with `sos logs {name} --revision {int(number)}`",
            details={"revision": to},
        )
    check_shadowed(spec, to, shadow_report)
    gates = [g for g in ("max_error_rate", "max_p99_ms") if getattr(spec, g) is not None]
    if (gates or spec.min_requests) and not metrics_available:
        raise ValidationError(
            f"this server's backend reports no request metrics to SOS, so a rollout cannot "
            f"check {', '.join(gates) or 'min_requests'}: start it without gates and with "
            "min_requests 0 (it then only steps on time), or use the local runtime",
            details={"field": gates[0] if gates else "min_requests"},
        )
    if service.traffic is None:
        raise ValidationError(
            f"service {name!r} has no traffic yet: its first revision gets all of it",
            details={"service": name},
        )
    from_route = _as_route(service.traffic)
    has = traffic.shares(name, from_route).get(to, 0)
    if spec.steps[0] <= has:
        raise ValidationError(
            f"revision {number} has {has}% of the traffic already; start the steps above it "
            f"(like {','.join(str(p) for p in spec.steps if p > has) or '100'})",
            details={"field": "steps"},
        )
    first = traffic.with_share(name, from_route, to, spec.steps[0])
    now = store.clock()
    spec = spec.model_copy(update={"to": to})
    gates_text = (
        ", ".join(
            part
            for part in (
                f"max error rate {_pct(spec.max_error_rate)}"
                if spec.max_error_rate is not None
                else "",
                f"max p99 {spec.max_p99_ms:g} ms" if spec.max_p99_ms is not None else "",
            )
            if part
        )
        or "no gates"
    )
    with control.one_change():
        applied = control.set_traffic(token, name, first)
        rollout = RolloutStatus(
            service=name,
            spec=spec,
            state="running",
            step=0,
            percent=spec.steps[0],
            started_at=now,
            started_by=token.name,
            step_started_at=now,
            updated_at=now,
            from_route=from_route,
            route=_as_route(applied),
        )
        table.start(
            rollout,
            actor=token.name,
            summary=f"rollout of revision {number} started: steps "
            f"{','.join(map(str, spec.steps))}% every {spec.step_seconds:g}s, {gates_text}, "
            f"at least {spec.min_requests} requests a step",
        )
    return rollout


def stop(table: RolloutTable, control: ControlPlane, token: Token, name: str) -> RolloutStatus:
    service = control.store.get_service(name)
    can_write(token, service.team, f"the traffic of service {name!r}")
    for _ in range(5):
        stored = table.get(name)
        if stored is None or stored.status.state != "running":
            raise ConflictError(
                f"service {name!r} has no rollout running"
                + (f" (the last one {stored.status.state.replace('_', ' ')})" if stored else ""),
                details={"service": name},
            )
        now = control.store.clock()
        reason = (
            f"stopped by {token.name}: the traffic stays as it is (roll back with "
            f"`sos rollback {name}`)"
        )
        moved = table.move(
            stored.status.model_copy(
                update={"state": "stopped", "reason": reason, "updated_at": now}
            ),
            expected_version=stored.version,
            actor=token.name,
            record=("rollout.stopped", f"rollout stopped by {token.name}"),
        )
        if moved is not None:
            return moved.status
    raise ConflictError(f"the rollout of {name!r} moves too often right now; retry")


# --------------------------------------------------------------------------- HTTP


def _rollouts(state: Any) -> RolloutTable:
    table: RolloutTable = state.extra.setdefault("rollouts", RolloutTable(state.store))
    return table


def _table(request: Request) -> RolloutTable:
    return _rollouts(request.app.state.sos)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: Any = app.state.sos
    driver = RolloutDriver(
        state.control,
        _rollouts(state),
        sampler=lambda: state.extra.get("metrics"),
        tick=seconds_from_env("SOS_ROLLOUT_TICK", DEFAULT_TICK_SECONDS, 0.05, 60),
        lease=seconds_from_env("SOS_ROLLOUT_LEASE", DEFAULT_LEASE_SECONDS, 0.15, 3600),
    )
    state.extra["rollout_driver"] = driver  # its name is in the rollouts it drives
    async with running(driver.run(), "sos-rollout-driver"):
        yield


router = APIRouter(tags=["traffic"], responses=ERROR_RESPONSES, lifespan=_lifespan)


@router.post(
    "/services/{name}/rollout",
    status_code=status.HTTP_201_CREATED,
    summary="Start a rollout that steps the candidate's share up and rolls back on a breach",
)
async def start_rollout(
    request: Request, token: Principal, name: ServiceName, spec: Rollout
) -> RolloutStatus:
    state = request.app.state.sos
    sampler: MetricsSampler | None = state.extra.get("metrics")
    report = None
    if spec.min_overlap is not None:
        await run_in_threadpool(state.store.get_service, name)  # 404 before asking the backend
        report = await state.backend.shadow_report(name)
    return await run_in_threadpool(
        functools.partial(
            start,
            state.control,
            _table(request),
            token,
            name,
            spec,
            metrics_available=sampler is not None and sampler.available,
            shadow_report=report,
        )
    )


@router.get("/services/{name}/rollout", summary="The service's rollout: running or how it ended")
def get_rollout(request: Request, token: Principal, name: ServiceName) -> RolloutStatus:
    service = request.app.state.sos.store.get_service(name)
    can_read(token, service.team, f"the rollout of service {name!r}")
    stored = _table(request).get(name)
    if stored is None:
        raise NotFoundError(
            f"service {name!r} has had no rollout: start one with `sos rollout {name} --to REV`",
            details={"service": name},
        )
    return stored.status


@router.post("/services/{name}/rollout/stop", summary="Stop the running rollout where it is")
def stop_rollout(request: Request, token: Principal, name: ServiceName) -> RolloutStatus:
    return stop(_table(request), request.app.state.sos.control, token, name)
