"""What the server's background loops share: a task for the app's lifetime, and their
period read from the environment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import AsyncIterator, Coroutine
from typing import Any

__all__ = ["running", "seconds_from_env"]

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def running(loop: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run ``loop`` as a task while the context is open; cancel it on the way out."""
    task = asyncio.create_task(loop, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def seconds_from_env(variable: str, default: float, low: float, high: float) -> float:
    """A period in seconds from ``variable``; out of [low, high] or not a number: said
    once in the log, and ``default`` instead."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        log.warning(
            "%s=%r is not a number of seconds between %g and %g; using %g s instead",
            variable,
            text,
            low,
            high,
            default,
        )
        return default
    return value
