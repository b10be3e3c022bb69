"""Request budgets: a deadline that every pipeline run inside it respects.

>>> with flight.deadline(0.150):                      # 150 ms for everything below
...     result = await pipeline.execute(user_id=1)
>>> result.partial, result.cut                         # which sources the deadline cut

Sources get what is left of the deadline as their timeout (their own timeout still applies
when it is shorter); a source still running when the deadline runs out is *cut*. A cut
optional source is skipped and the result is marked ``partial``; a cut required source ends
the run with a reason that names it. Steps after the sources are never cut (they are CPU work
that cannot be interrupted) and retries are not started without time left.

Served apps set a deadline per request from the ``X-Flight-Budget-Ms`` header or the
``budget_ms`` parameter, or the server default. Deadlines nest: an inner one never extends
an outer one. Source operators that call other services can read :func:`time_left` (the
``flight.http`` client does, and bounds its own timeout by it).
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Deadline", "current_deadline", "deadline", "time_left"]


class Deadline:
    """A point in time on a monotonic ``clock``, ``seconds`` after it was made."""

    __slots__ = ("at", "clock", "seconds")

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(seconds, int | float) or math.isnan(seconds) or seconds < 0:
            raise ValueError(f"a deadline is a number of seconds >= 0, got {seconds!r}")
        self.seconds = float(seconds)
        self.clock = clock
        self.at = clock() + self.seconds

    def remaining(self) -> float:
        """Seconds left (0 or less: expired)."""
        return self.at - self.clock()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def __repr__(self) -> str:
        return f"Deadline({self.seconds:g}s, {self.remaining():.3f}s left)"


_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "flight_deadline", default=None
)
#: set by the server for one request: every pipeline run in it returns its debug trace
_debug: contextvars.ContextVar[bool] = contextvars.ContextVar("flight_debug", default=False)


def current_deadline() -> Deadline | None:
    """The deadline of the code running now, if any."""
    return _deadline.get()


def time_left() -> float | None:
    """Seconds left before the current deadline (``None``: no deadline)."""
    current = _deadline.get()
    return None if current is None else current.remaining()


@contextmanager
def deadline(
    seconds: float | None, *, clock: Callable[[], float] = time.monotonic
) -> Iterator[Deadline | None]:
    """Run the block under a deadline ``seconds`` from now (``None``: no new limit).

    Nested deadlines keep the earlier one, so a callee can shorten but never extend the
    budget it was given."""
    outer = _deadline.get()
    if seconds is None:
        yield outer
        return
    new = Deadline(seconds, clock=clock)
    if outer is not None and outer.clock is clock and outer.at <= new.at:
        new = outer
    token = _deadline.set(new)
    try:
        yield new
    finally:
        _deadline.reset(token)


@contextmanager
def _debug_scope(on: bool) -> Iterator[None]:
    token = _debug.set(on)
    try:
        yield
    finally:
        _debug.reset(token)
