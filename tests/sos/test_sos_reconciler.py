"""The reconciler: status as a pure function (table tests), and the loop against the fake
backend and a real SQLite store."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sos.models import (
    Artifact,
    Instances,
    Revision,
    RevisionSpec,
    RevisionStatus,
    Route,
    Service,
    ServiceSpec,
    ServiceStatus,
    TrafficRoute,
)
from sos.reconciler import Reconciler, compute_status
from sos.runtime.base import DesiredService, ObservedRevision, ObservedService
from sos.runtime.fake import FakeBackend
from sos.store import Store

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SVC = "svc"


def rev(n: int) -> Revision:
    return Revision(
        id=f"{SVC}-{n:05d}", service=SVC, number=n, artifact=Artifact(name="a", version=str(n))
    )


def desired(*routes: tuple[int, int], revisions: int = 2) -> DesiredService:
    traffic = (
        TrafficRoute(routes=[Route(revision=f"{SVC}-{n:05d}", percent=p) for n, p in routes])
        if routes
        else None
    )
    return DesiredService(
        service=Service(name=SVC, team="t"),
        revisions=tuple(rev(n) for n in range(1, revisions + 1)),
        traffic=traffic,
    )


def observed(*ready: bool, failed: int | None = None) -> ObservedService:
    return ObservedService(
        name=SVC,
        ready=True,
        reason="Ready",
        url="http://svc.test",
        revisions={
            f"{SVC}-{n:05d}": ObservedRevision(
                id=f"{SVC}-{n:05d}",
                ready=ok,
                reason="Ready" if ok else ("CrashLoop" if n == failed else "Deploying"),
                failed=n == failed,
                instances=Instances(wanted=1, running=1, ready=int(ok)),
            )
            for n, ok in enumerate(ready, start=1)
        },
    )


@pytest.mark.parametrize(
    ("given", "seen", "error", "want_ready", "want_reason", "want_message"),
    [
        (desired((1, 100)), observed(True, True), None, True, "Ready", None),
        (desired((2, 100)), observed(True, False), None, False, "RevisionNotReady", "00002"),
        (
            desired((1, 10), (2, 90)),
            observed(True, False, failed=2),
            None,
            False,
            "RevisionFailed",
            "CrashLoop",
        ),
        # a revision without traffic does not make the service unready
        (desired((1, 100)), observed(True, False), None, True, "Ready", None),
        (desired(), observed(True, True), None, False, "NoTraffic", "create a revision"),
        (desired((1, 100)), None, None, False, "Pending", "not reported"),
        (desired((1, 100)), None, "connection refused", False, "BackendError", "refused"),
    ],
)
def test_service_status_from_desired_and_observed(
    given: DesiredService,
    seen: ObservedService | None,
    error: str | None,
    want_ready: bool,
    want_reason: str,
    want_message: str | None,
) -> None:
    status, _ = compute_status(given, seen, error, NOW)
    assert (status.ready, status.reason) == (want_ready, want_reason)
    if want_message is None:
        assert status.message is None
    else:
        assert want_message in (status.message or "")
    ready_condition = next(c for c in status.conditions if c.type == "Ready")
    assert ready_condition.status == ("True" if want_ready else "False")


def test_revision_status_copies_what_the_backend_saw() -> None:
    _, revisions = compute_status(desired((1, 100)), observed(True, False, failed=2), None, NOW)
    one, two = revisions[f"{SVC}-00001"], revisions[f"{SVC}-00002"]
    assert one.ready and one.instances.ready == 1 and not one.failed
    assert not two.ready and two.failed and two.reason == "CrashLoop"
    assert [c.type for c in one.conditions] == ["Ready", "Active"]


def test_status_names_the_spec_it_was_computed_for() -> None:
    given = desired((1, 100))
    given = dataclasses.replace(
        given, service=given.service.model_copy(update={"resource_version": 7})
    )
    status, revisions = compute_status(given, observed(True, True), None, NOW)
    assert status.observed_generation == 7
    assert {r.observed_generation for r in revisions.values()} == {7}


def test_latest_ready_is_the_newest_ready_revision() -> None:
    status, _ = compute_status(
        desired((1, 100), revisions=3), observed(True, True, False), None, NOW
    )
    assert status.latest_ready_revision == f"{SVC}-00002"


def test_backend_error_keeps_the_last_known_revision_status() -> None:
    _, revisions = compute_status(desired((1, 100)), None, "boom", NOW)
    assert revisions == {}


def test_condition_transition_time_stays_while_status_holds() -> None:
    first, _ = compute_status(desired((1, 100)), observed(True, True), None, NOW)
    later = NOW.replace(hour=5)
    service = Service(name=SVC, team="t", status=first)
    again = DesiredService(
        service=service, revisions=desired().revisions, traffic=desired((1, 100)).traffic
    )
    second, _ = compute_status(again, observed(True, True), None, later)
    assert second.conditions[0].last_transition_time == NOW


# --------------------------------------------------------------------------- the loop


class FlakyBackend(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    async def apply(self, desired: DesiredService) -> None:
        if self.fail:
            raise RuntimeError("cluster unreachable")
        await super().apply(desired)


def make_store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'sos.db'}")
    store.migrate()
    store.create_service(ServiceSpec(name=SVC, team="t"), actor="t")
    store.create_revision(
        SVC, RevisionSpec(artifact=Artifact(name="a", version="1")), expected_version=1, actor="t"
    )
    return store


def reconciler_for(store: Store, backend: FakeBackend) -> Reconciler:
    return Reconciler(
        backend,
        desired=store.desired,
        service_names=store.service_names,
        write_status=store.write_status,
        resync_seconds=60,
        converge_seconds=0.05,
    )


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - polls the store, which has no event to await
            await asyncio.sleep(0.02)


async def test_backend_errors_become_status_and_are_retried(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    backend = FlakyBackend()
    reconciler = reconciler_for(store, backend)
    await reconciler.start()
    try:
        await eventually(lambda: store.get_service(SVC).status.reason == "BackendError")
        assert "cluster unreachable" in (store.get_service(SVC).status.message or "")
        backend.fail = False  # the loop kept running and retries with backoff
        await eventually(lambda: store.get_service(SVC).status.ready, within=10)
        assert store.get_revision(SVC, f"{SVC}-00001").status.ready
    finally:
        await reconciler.stop()


async def test_orphans_are_deleted_at_start_and_deleted_services_on_notify(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path)
    backend = FakeBackend()
    await backend.apply(
        DesiredService(service=Service(name="orphan", team="t"), revisions=(), traffic=None)
    )
    reconciler = reconciler_for(store, backend)
    await reconciler.start()
    try:
        await eventually(lambda: SVC in backend.applied)
        assert "orphan" not in backend.applied
        store.delete_service(SVC, expected_version=2, actor="t")
        reconciler.notify(SVC)
        await eventually(lambda: SVC not in backend.applied)
        assert ("delete", SVC) in backend.calls
    finally:
        await reconciler.stop()


async def test_notify_from_another_thread_triggers_apply(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    backend = FakeBackend()
    reconciler = reconciler_for(store, backend)
    await reconciler.start()
    try:
        await eventually(lambda: SVC in backend.applied)
        store.create_revision(
            SVC,
            RevisionSpec(artifact=Artifact(name="a", version="2")),
            expected_version=2,
            actor="t",
        )
        await asyncio.to_thread(reconciler.notify, SVC)
        await eventually(lambda: len(backend.applied[SVC].revisions) == 2)
    finally:
        await reconciler.stop()


async def test_unchanged_status_is_not_written_again(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    writes: list[str] = []

    def counting(name: str, status: ServiceStatus, revisions: Mapping[str, RevisionStatus]) -> bool:
        writes.append(name)
        return store.write_status(name, status, revisions)

    reconciler = Reconciler(
        FakeBackend(),
        desired=store.desired,
        service_names=store.service_names,
        write_status=counting,
    )
    await reconciler.start()  # start-up reconciles once: the status changes from Pending
    try:
        assert await reconciler.reconcile(SVC) is None  # settled: next look at the resync
        await eventually(lambda: store.get_service(SVC).status.ready)
        before = len(writes)
        for _ in range(3):
            await reconciler.reconcile(SVC)
        assert len(writes) == before
    finally:
        await reconciler.stop()


def test_a_failure_is_remembered_until_an_instance_serves_again() -> None:
    """After a restart (or at zero instances) the backend no longer knows a revision had
    failed: its stored failure stands until an instance of it is ready again."""
    failed_before = desired((1, 100))
    stored = RevisionStatus(failed=True, reason="CrashLoop", message="exited with code 3")
    failed_before = DesiredService(
        service=failed_before.service,
        revisions=(rev(1).model_copy(update={"status": stored}), rev(2)),
        traffic=failed_before.traffic,
    )
    at_zero = ObservedService(
        name=SVC,
        ready=True,
        reason="Ready",
        revisions={
            f"{SVC}-00001": ObservedRevision(
                f"{SVC}-00001", True, "Ready", "scaled to zero", Instances(wanted=0)
            )
        },
    )
    _, revisions = compute_status(failed_before, at_zero, None, NOW)
    one = revisions[f"{SVC}-00001"]
    assert one.failed and not one.ready and one.reason == "CrashLoop"
    assert one.message == "exited with code 3"
    serving = observed(True, True)
    _, revisions = compute_status(failed_before, serving, None, NOW)
    assert revisions[f"{SVC}-00001"].ready and not revisions[f"{SVC}-00001"].failed
