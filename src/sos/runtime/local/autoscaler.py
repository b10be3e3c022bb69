"""Concurrency-based autoscaling decisions, modelled on Knative's KPA. Pure logic.

The router reports, for each revision, the time-weighted average number of in-flight
requests over each tick (``record``). ``decide`` turns that history into a wanted instance
count:

- stable mode: ``ceil(average over the stable window / (target * utilization))``;
- panic mode: entered when the panic-window average asks for at least
  ``panic_threshold`` times the ready instances; while panicking the count never goes down,
  and panic ends one stable window after the last time the threshold was crossed;
- rate limits: at most ``max_scale_up_rate`` times the ready instances up, at most
  ``ready / max_scale_down_rate`` down, per decision;
- ``scale_down_delay_seconds``: the highest wanted count within that delay is kept;
- bounds: ``[min_scale, max_scale]`` for routable revisions, ``[0, max_scale]`` for the
  others (only routable revisions keep ``min_scale``);
- scale to zero: when the lower bound is 0 and no request has been in flight for
  ``scale_to_zero_grace_seconds``; a request held by the activator wakes it at once.

Time is a number of seconds passed in by the caller (an injected clock), so the whole
module is tested without sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from sos.models import Autoscaling

__all__ = ["Autoscaler", "Decision"]


@dataclass(frozen=True)
class Decision:
    """What the autoscaler wants now, and why (for status messages and logs)."""

    wanted: int
    panic: bool
    stable_concurrency: float
    panic_concurrency: float
    reason: str


class Autoscaler:
    """The scaling state of one revision.

    ``created_at`` counts as activity, so that a new revision keeps its ``initial_scale``
    instances for a grace period before scaling down.
    """

    def __init__(self, spec: Autoscaling, *, created_at: float) -> None:
        self.spec = spec
        self._samples: deque[tuple[float, float]] = deque()
        self._last_active = created_at
        self._panic_until: float | None = None
        self._recent_wants: deque[tuple[float, int]] = deque()
        self._current = spec.initial_scale
        self._poked = False

    @property
    def current(self) -> int:
        """The count of the last decision (``initial_scale`` before the first)."""
        return self._current

    def assume(self, count: int) -> None:
        """Start from ``count`` instances (re-adopted after a restart) instead of the
        initial scale."""
        self._current = count

    def record(self, now: float, concurrency: float) -> None:
        """One observation: the average in-flight requests since the previous one."""
        self._samples.append((now, max(0.0, concurrency)))
        if concurrency > 0:
            self._last_active = now
        horizon = now - self.spec.stable_window_seconds
        while self._samples and self._samples[0][0] <= horizon:
            self._samples.popleft()

    def poke(self, now: float) -> None:
        """A request is waiting for an instance (activator): scale from zero right away."""
        self._last_active = now
        self._poked = True

    def _average(self, now: float, window: float) -> float:
        values = [value for at, value in self._samples if at > now - window]
        return sum(values) / len(values) if values else 0.0

    def decide(self, now: float, *, ready: int, routable: bool, starting: bool = False) -> Decision:
        """How many instances now. ``starting``: the revision has never been ready and has
        not failed, so it is not scaled down until it is ready or fails its start-up
        budget (a revision is never scaled to zero into "Ready" before it served)."""
        spec = self.spec
        target = spec.target_concurrency * spec.target_utilization_percentage / 100
        panic_window = spec.stable_window_seconds * spec.panic_window_percentage / 100
        stable = self._average(now, spec.stable_window_seconds)
        panic = self._average(now, panic_window)
        want_stable = math.ceil(stable / target - 1e-9)
        want_panic = math.ceil(panic / target - 1e-9)
        # Knative computes against at least one ready instance, so that a scale from zero
        # is not rate-limited to nothing.
        base = max(1, ready)

        if panic / target >= base * spec.panic_threshold_percentage / 100:
            self._panic_until = now + spec.stable_window_seconds
        elif self._panic_until is not None and now >= self._panic_until:
            self._panic_until = None
        panicking = self._panic_until is not None

        wanted = max(want_panic, want_stable) if panicking else want_stable
        reason = f"average concurrency {stable:.2f} over {spec.stable_window_seconds:g}s"
        if panicking:
            reason = f"panic: concurrency {panic:.2f} over the last {panic_window:g}s"
            wanted = max(wanted, self._current)

        max_up = math.ceil(spec.max_scale_up_rate * base)
        max_down = math.floor(ready / spec.max_scale_down_rate)
        if wanted > max_up:
            wanted, reason = max_up, f"{reason}; scale-up rate limit {max_up}"
        if wanted < max_down:
            wanted, reason = max_down, f"{reason}; scale-down rate limit {max_down}"

        wanted = self._delay_scale_down(now, wanted)

        low = spec.min_scale if routable else 0
        if self._poked:
            wanted = max(wanted, 1)
            reason = "a request is waiting (scale from zero)"
            self._poked = False
        elif wanted == 0 and now - self._last_active < spec.scale_to_zero_grace_seconds:
            # keep one instance warm through the grace period (none if there is none)
            wanted = min(1, self._current)
            grace = spec.scale_to_zero_grace_seconds
            reason = f"idle; scales to zero after {grace:g}s without requests"
        if wanted < low:
            wanted, reason = low, f"min_scale {low}"
        if wanted > spec.max_scale:
            wanted, reason = spec.max_scale, f"{reason}; max_scale {spec.max_scale}"
        if starting and wanted < self._current:
            wanted, reason = self._current, "not scaled down while its first instance starts"
        if wanted == 0:
            reason = "scaled to zero: no requests" if routable else "no traffic"
        self._current = wanted
        return Decision(wanted, panicking, stable, panic, reason)

    def _delay_scale_down(self, now: float, wanted: int) -> int:
        delay = self.spec.scale_down_delay_seconds
        if delay <= 0:
            return wanted
        self._recent_wants.append((now, wanted))
        while self._recent_wants and self._recent_wants[0][0] <= now - delay:
            self._recent_wants.popleft()
        return max(want for _, want in self._recent_wants)
