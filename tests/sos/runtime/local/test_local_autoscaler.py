"""KPA-style decisions with a fake clock: no test here sleeps."""

from __future__ import annotations

import pytest

from sos.models import Autoscaling
from sos.runtime.local.autoscaler import Autoscaler


def feed(scaler: Autoscaler, start: float, seconds: int, concurrency: float) -> float:
    """One sample a second for ``seconds``; returns the time after the last sample."""
    now = start
    for _ in range(seconds):
        now += 1
        scaler.record(now, concurrency)
    return now


def spec(**changes: float) -> Autoscaling:
    base = {"target_concurrency": 10, "target_utilization_percentage": 100, "max_scale": 50}
    return Autoscaling.model_validate({**base, **changes})


@pytest.mark.parametrize(
    ("concurrency", "ready", "wanted"),
    [
        (10, 1, 1),  # exactly the target: one instance
        (25, 3, 3),  # 2.5 targets: three instances
        (40, 4, 4),
        (5, 2, 1),  # half a target: one is enough (scale-down rate allows 2 -> 1)
    ],
)
def test_stable_mode_wants_average_over_target(concurrency: float, ready: int, wanted: int) -> None:
    scaler = Autoscaler(spec(min_scale=1), created_at=0)
    now = feed(scaler, 0, 60, concurrency)
    decision = scaler.decide(now, ready=ready, routable=True)
    assert decision.wanted == wanted
    assert not decision.panic


def test_utilization_lowers_the_effective_target() -> None:
    scaler = Autoscaler(spec(target_utilization_percentage=50, min_scale=1), created_at=0)
    now = feed(scaler, 0, 60, 10)  # target 10 at 50% -> 5 per instance
    assert scaler.decide(now, ready=2, routable=True).wanted == 2


def test_burst_enters_panic_and_scales_on_the_short_window() -> None:
    scaler = Autoscaler(spec(min_scale=1), created_at=0)
    now = feed(scaler, 0, 54, 5)  # calm: one instance
    now = feed(scaler, now, 6, 60)  # last 6 s: 60 in flight on one instance
    decision = scaler.decide(now, ready=1, routable=True)
    assert decision.panic
    assert decision.wanted == 6  # panic window average / target
    # the stable window alone would have asked for ceil((54*5 + 6*60) / 60 / 10) = 2
    assert decision.stable_concurrency == pytest.approx((54 * 5 + 6 * 60) / 60)


def test_panic_never_scales_down_until_a_stable_window_passes() -> None:
    scaler = Autoscaler(spec(min_scale=1), created_at=0)
    now = feed(scaler, 0, 6, 60)
    assert scaler.decide(now, ready=1, routable=True).wanted == 6
    now = feed(scaler, now, 10, 0)  # the burst is over
    calm = scaler.decide(now, ready=6, routable=True)
    assert calm.panic and calm.wanted == 6
    now = feed(scaler, now, 60, 0)  # a whole stable window without a burst
    after = scaler.decide(now, ready=6, routable=True)
    assert not after.panic
    assert after.wanted == 3  # rate-limited: 6 / max_scale_down_rate(2)


@pytest.mark.parametrize(
    ("changes", "ready", "wanted"),
    [
        ({"max_scale_up_rate": 2}, 2, 4),  # would want 10, may only double
        ({"max_scale": 3}, 2, 3),
        ({"min_scale": 4}, 2, 10),  # min_scale does not cap growth
    ],
)
def test_scale_up_limits(changes: dict[str, float], ready: int, wanted: int) -> None:
    scaler = Autoscaler(spec(**changes), created_at=0)
    now = feed(scaler, 0, 60, 100)
    assert scaler.decide(now, ready=ready, routable=True).wanted == wanted


def test_scale_down_rate_halves_at_most_per_decision() -> None:
    scaler = Autoscaler(spec(min_scale=1, max_scale_down_rate=2), created_at=0)
    now = feed(scaler, 0, 60, 1)
    assert scaler.decide(now, ready=8, routable=True).wanted == 4


def test_min_scale_is_kept_only_for_routable_revisions() -> None:
    scaler = Autoscaler(spec(min_scale=2, scale_to_zero_grace_seconds=0), created_at=0)
    now = feed(scaler, 0, 60, 0)
    assert scaler.decide(now, ready=2, routable=True).wanted == 2
    other = Autoscaler(spec(min_scale=2, scale_to_zero_grace_seconds=0), created_at=0)
    now = feed(other, 0, 60, 0)
    assert other.decide(now, ready=1, routable=False).wanted == 0


def test_scale_to_zero_waits_for_the_idle_grace_period() -> None:
    scaler = Autoscaler(spec(scale_to_zero_grace_seconds=30, stable_window_seconds=6), created_at=0)
    now = feed(scaler, 0, 10, 3)  # traffic until t=10
    now = feed(scaler, now, 20, 0)  # idle for 20 s
    waiting = scaler.decide(now, ready=1, routable=True)
    assert waiting.wanted == 1
    assert "scales to zero after 30s" in waiting.reason
    now = feed(scaler, now, 10, 0)  # idle for 30 s
    assert scaler.decide(now, ready=1, routable=True).wanted == 0


def test_new_revision_keeps_initial_scale_through_the_grace_period() -> None:
    scaler = Autoscaler(spec(initial_scale=1, scale_to_zero_grace_seconds=30), created_at=100)
    assert scaler.current == 1
    assert scaler.decide(110, ready=1, routable=False).wanted == 1
    assert scaler.decide(131, ready=1, routable=False).wanted == 0


def test_initial_scale_zero_starts_nothing() -> None:
    scaler = Autoscaler(spec(initial_scale=0), created_at=0)
    assert scaler.decide(1, ready=0, routable=True).wanted == 0


def test_waiting_request_wakes_a_revision_from_zero() -> None:
    scaler = Autoscaler(spec(scale_to_zero_grace_seconds=0), created_at=0)
    now = feed(scaler, 0, 60, 0)
    assert scaler.decide(now, ready=1, routable=True).wanted == 0
    scaler.poke(now + 1)
    woken = scaler.decide(now + 1, ready=0, routable=True)
    assert woken.wanted == 1
    assert "waiting" in woken.reason


def test_scale_down_delay_keeps_the_highest_recent_want() -> None:
    scaler = Autoscaler(
        spec(min_scale=1, stable_window_seconds=6, scale_down_delay_seconds=30), created_at=0
    )
    now = feed(scaler, 0, 6, 40)
    assert scaler.decide(now, ready=4, routable=True).wanted == 4
    now = feed(scaler, now, 10, 0)
    assert scaler.decide(now, ready=4, routable=True).wanted == 4  # within the delay
    now = feed(scaler, now, 25, 0)
    assert scaler.decide(now, ready=4, routable=True).wanted == 2  # delay over, rate 4/2
