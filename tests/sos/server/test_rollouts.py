"""Rollouts that stop themselves: the policy as a table, then the driver in a real server
over HTTP. The fake backend stands in for the data path (its ``serve`` counts requests a
router would have counted); the local runtime's own run is in benchmarks/rollout.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from sos_harness import until
from sos_server import deploy_canary_ready, wait_sampled

from sos import (
    Client,
    ConflictError,
    NotFoundError,
    Rollout,
    RolloutCheck,
    RolloutStatus,
    Route,
    ShadowComparison,
    TrafficRoute,
    ValidationError,
)
from sos import traffic as rules
from sos.runtime.fake import FakeBackend
from sos.server.rollouts import check_shadowed, decide
from sos.store.rollouts import RolloutTable

if TYPE_CHECKING:
    from sos_server import RunningServer

SVC = "shop"
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def route(*shares: tuple[str, int]) -> TrafficRoute:
    return TrafficRoute(routes=[Route(revision=f"{SVC}-{r}", percent=p) for r, p in shares])


# --------------------------------------------------------------------------- the split


@pytest.mark.parametrize(
    ("base", "percent", "expected"),
    [
        ([("00001", 100)], 10, "00002=10 00001=90"),
        ([("00001", 70), ("00003", 30)], 10, "00002=10 00001=63 00003=27"),
        ([("00001", 50), ("00003", 50)], 33, "00002=33 00001=34 00003=33"),
        ([("00001", 90), ("00002", 10)], 50, "00002=50 00001=50"),
        ([("00001", 100)], 100, "00002=100"),
    ],
)
def test_the_others_keep_their_proportions(
    base: list[tuple[str, int]], percent: int, expected: str
) -> None:
    got = rules.with_share(SVC, route(*base), f"{SVC}-00002", percent)
    assert rules.describe(got) == expected
    assert sum(r.percent for r in got.routes) == 100


def test_tags_stay_on_their_revisions() -> None:
    base = TrafficRoute(
        routes=[
            Route(revision=f"{SVC}-00001", percent=100),
            Route(revision=f"{SVC}-00003", percent=0, tag="old"),
        ]
    )
    got = rules.with_share(SVC, base, f"{SVC}-00002", 50)
    assert rules.describe(got) == "00002=50 00001=50 00003=0@old"


# --------------------------------------------------------------------------- the policy


def status(**changes: object) -> RolloutStatus:
    spec = Rollout(
        to=f"{SVC}-00002",
        steps=[10, 50, 100],
        step_seconds=60,
        max_error_rate=0.01,
        max_p99_ms=300,
        min_requests=20,
    )
    now_route = route(("00002", 10), ("00001", 90))
    base = RolloutStatus(
        service=SVC,
        spec=spec,
        state="running",
        step=0,
        percent=10,
        started_at=T0,
        started_by="alice",
        step_started_at=T0,
        updated_at=T0,
        from_route=route(("00001", 100)),
        route=now_route,
    )
    return base.model_copy(update=changes)


def check(requests: int, errors: int = 0, p99: float | None = 50) -> RolloutCheck:
    return RolloutCheck(
        at=T0,
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else None,
        p99_ms=p99,
    )


@pytest.mark.parametrize(
    ("case", "rollout", "figures", "after", "failed", "action", "why"),
    [
        ("early, healthy", status(), check(30), 10, None, "wait", None),
        ("errors trip at once", status(), check(100, 5), 10, None, "roll_back", "error rate 5.0%"),
        ("slow trips at once", status(), check(100, 0, 900), 10, None, "roll_back", "p99 900 ms"),
        ("too few to judge", status(), check(10, 10), 10, None, "wait", None),
        ("step over, too few", status(), check(5), 61, None, "wait", "waiting for 20 requests"),
        ("step over, healthy", status(), check(30), 61, None, "advance", None),
        ("last step passes", status(step=2, percent=100), check(30), 61, None, "succeed", None),
        ("candidate failed", status(), check(30), 10, "CrashLoop: boom", "roll_back", "failed"),
        ("at the 1% edge", status(), check(100, 1), 10, None, "wait", None),
    ],
)
def test_the_policy(
    case: str,
    rollout: RolloutStatus,
    figures: RolloutCheck,
    after: float,
    failed: str | None,
    action: str,
    why: str | None,
) -> None:
    decision = decide(
        rollout,
        figures,
        T0 + timedelta(seconds=after),
        route_now=rollout.route,
        candidate_failed=failed,
    )
    assert decision.action == action, case
    if why is not None:
        assert decision.reason is not None and why in decision.reason, decision.reason


def test_someone_elses_traffic_change_stops_the_rollout() -> None:
    rollout = status()
    decision = decide(rollout, check(30), T0, route_now=route(("00001", 100)))
    assert decision.action == "stop" and "changed by someone else" in (decision.reason or "")
    sticky = rollout.route.model_copy(update={"split_by": "header:X-User-Id"})
    assert decide(rollout, check(30), T0, route_now=sticky).action == "stop"


# --------------------------------------------------------------------------- the driver


@pytest.fixture
def shop(rollout_shop: RunningServer) -> RunningServer:
    return rollout_shop


def fake(server: RunningServer) -> FakeBackend:
    backend = server.state.backend
    assert isinstance(backend, FakeBackend)
    return backend


def wait_state(
    client: Client,
    state: str,
    timeout: float = 20,
    serve: Callable[[], None] | None = None,
) -> RolloutStatus:
    deadline = time.monotonic() + timeout
    while True:
        got = client.get_rollout(SVC)
        if got.state == state:
            return got
        if got.state != "running" or time.monotonic() > deadline:
            raise AssertionError(f"rollout is {got.state} ({got.reason}), not {state}")
        if serve is not None:
            serve()
        time.sleep(0.1)


def shares(client: Client) -> dict[str, int]:
    return rules.shares(SVC, client.get_traffic(SVC))


def test_a_healthy_candidate_gets_every_step_then_all_traffic(shop: RunningServer) -> None:
    backend = fake(shop)
    with shop.client() as client:
        started = client.start_rollout(
            SVC,
            Rollout(to="2", steps=[30, 100], step_seconds=1, max_error_rate=0.05, min_requests=5),
        )
        assert started.state == "running" and started.percent == 30
        assert shares(client) == {f"{SVC}-00002": 30, f"{SVC}-00001": 70}
        done = wait_state(
            client, "succeeded", serve=lambda: backend.serve(f"{SVC}-00002", 3, errors=0)
        )
        assert done.reason is not None and "every step passed" in done.reason
        assert shares(client) == {f"{SVC}-00002": 100}
        actions = [e.action for e in client.history(SVC)]
    assert actions[0] == "rollout.succeeded"
    assert actions.count("traffic.changed") == 3  # the first revision, 30%, 100%
    assert "rollout.started" in actions


def test_an_error_burst_rolls_back_in_one_step_with_the_figures(shop: RunningServer) -> None:
    backend = fake(shop)
    with shop.client() as client:
        client.start_rollout(
            SVC,
            Rollout(to="2", steps=[10, 50, 100], step_seconds=600, max_error_rate=0.01),
        )
        backend.serve(f"{SVC}-00002", 40, errors=10)  # the burst
        rolled = wait_state(client, "rolled_back")
        assert rolled.reason is not None and rolled.reason.startswith("error rate 25.0% > 1.0%")
        assert rolled.last is not None and rolled.last.errors == 10
        assert shares(client) == {f"{SVC}-00001": 100}  # the route it started from
        entry = client.history(SVC)[0]
    assert entry.action == "rollout.rolled_back" and "error rate 25.0%" in entry.summary


def test_a_slow_candidate_rolls_back_on_p99(shop: RunningServer) -> None:
    backend = fake(shop)
    with shop.client() as client:
        client.start_rollout(
            SVC, Rollout(to="2", steps=[10, 100], step_seconds=600, max_p99_ms=300)
        )
        backend.serve(f"{SVC}-00002", 30, seconds=0.9)
        rolled = wait_state(client, "rolled_back")
    assert rolled.reason is not None and rolled.reason.startswith("p99 ")
    assert "> 300 ms" in rolled.reason


def test_a_failed_candidate_rolls_back(shop: RunningServer) -> None:
    with shop.client() as client:
        client.start_rollout(SVC, Rollout(to="2", steps=[10, 100], step_seconds=600))
        fake(shop).fail(f"{SVC}-00002", "CrashLoop", "exit 1")
        rolled = wait_state(client, "rolled_back")
        assert rolled.reason is not None and "failed: CrashLoop" in rolled.reason
        assert shares(client) == {f"{SVC}-00001": 100}


def test_stop_and_someone_elses_change_leave_the_traffic_alone(shop: RunningServer) -> None:
    with shop.client() as client:
        client.start_rollout(SVC, Rollout(to="2", steps=[20, 100], step_seconds=600))
        stopped = client.stop_rollout(SVC)
        assert stopped.state == "stopped" and "stopped by admin" in (stopped.reason or "")
        assert shares(client) == {f"{SVC}-00002": 20, f"{SVC}-00001": 80}
        with pytest.raises(ConflictError, match="no rollout running"):
            client.stop_rollout(SVC)
        client.start_rollout(SVC, Rollout(to="2", steps=[50, 100], step_seconds=600))
        client.set_traffic(SVC, {1: 100})  # a person takes over
        ended = wait_state(client, "stopped")
        assert "changed by someone else" in (ended.reason or "")
        assert shares(client) == {f"{SVC}-00001": 100}


def test_what_cannot_run_is_refused_with_the_reason(shop: RunningServer) -> None:
    with shop.client() as client:
        with pytest.raises(NotFoundError, match="has had no rollout"):
            client.get_rollout(SVC)
        with pytest.raises(ValidationError, match="steps must rise"):
            client.start_rollout(SVC, Rollout.model_construct(to="2", steps=[50, 10, 100]))
        with pytest.raises(NotFoundError):
            client.start_rollout(SVC, Rollout(to="9"))
        with pytest.raises(ValidationError, match="has 100% of the traffic already"):
            client.start_rollout(SVC, Rollout(to="1"))
        client.start_rollout(SVC, Rollout(to="2", step_seconds=600))
        with pytest.raises(ConflictError, match="has a rollout running already"):
            client.start_rollout(SVC, Rollout(to="2", step_seconds=600))
        client.stop_rollout(SVC)
        client.set_traffic(SVC, {1: 100})
        fake(shop).fail(f"{SVC}-00002")
        deadline = time.monotonic() + 20
        while not client.get_revision(SVC, 2).status.failed:  # the reconciler has seen it
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(ConflictError, match="failed"):
            client.start_rollout(SVC, Rollout(to="2"))
    reader = shop.token("viewer", role="reader", team="recs")
    with shop.client(reader) as client:
        assert client.get_rollout(SVC).state == "stopped"
        with pytest.raises(Exception, match="read-only"):
            client.stop_rollout(SVC)


def test_a_restart_of_the_server_resumes_the_rollout(
    fast_rollouts: None, sos_server: Callable[..., RunningServer], tmp_path: object
) -> None:
    first = sos_server(data_dir=tmp_path / "data")  # type: ignore[operator]
    with first.client() as client:
        deploy_canary_ready(client, SVC)
        client.start_rollout(SVC, Rollout(to="2", steps=[10, 100], step_seconds=1, min_requests=5))
    table = first.state.extra["rollouts"]
    assert isinstance(table, RolloutTable)
    until(lambda: (row := table.get(SVC)) is not None and row.driver is not None, what="a driver")
    first.stop()
    left = table.get(SVC)  # let go on the way out: the next server need not wait for the lease
    assert left is not None and left.driver is not None and left.lease_until is None
    second = sos_server(data_dir=tmp_path / "data")  # type: ignore[operator]
    backend = fake(second)
    with second.client() as client:
        wait_sampled(client, SVC, 2)
        resumed = client.get_rollout(SVC)
        assert resumed.state == "running" and resumed.percent == 10
        done = wait_state(client, "succeeded", serve=lambda: backend.serve(f"{SVC}-00002", 2))
        assert done.percent == 100
        summaries = [e.summary for e in client.history(SVC) if e.action == "traffic.changed"]
    assert summaries[0].startswith("traffic 00002=100")


def comparison(shadow: str, compared: int, overlap: float) -> ShadowComparison:
    return ShadowComparison(
        primary=f"{SVC}-00001",
        shadow=shadow,
        mirrored=compared,
        dropped=0,
        compared=compared,
        shadow_errors=0,
        items_compared=compared,
        k=10,
        overlap_at_k=overlap,
    )


@pytest.mark.parametrize(
    ("report", "message"),
    [
        (None, "does not mirror requests"),
        ([], "0 compared answers"),
        ([comparison(f"{SVC}-00002", 5, 0.9)], "5 compared answers with item lists"),
        ([comparison(f"{SVC}-00003", 50, 0.9)], "0 compared answers"),  # another revision's
        ([comparison(f"{SVC}-00002", 50, 0.4)], "overlap the primary's by 0.400"),
        ([comparison(f"{SVC}-00002", 50, 0.8)], None),
    ],
)
def test_the_shadow_gate_before_the_first_step(
    report: list[ShadowComparison] | None, message: str | None
) -> None:
    spec = Rollout(to="2", min_overlap=0.6, min_requests=20)
    if message is None:
        check_shadowed(spec, f"{SVC}-00002", report)
        return
    with pytest.raises(ValidationError, match=message):
        check_shadowed(spec, f"{SVC}-00002", report)


def test_a_shadow_gate_is_refused_where_nothing_is_mirrored(shop: RunningServer) -> None:
    with shop.client() as client:
        with pytest.raises(ValidationError, match="does not mirror requests"):
            client.start_rollout(SVC, Rollout(to="2", min_overlap=0.5))
        with pytest.raises(NotFoundError, match="has had no rollout"):
            client.get_rollout(SVC)
