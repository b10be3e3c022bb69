"""Waiting for what a ``LocalBackend`` observes (never for a fixed time), and requests
through its router."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from sos.runtime.base import ObservedService
from sos.runtime.local.backend import LocalBackend

FAST = {"autoscaling": {"min_scale": 1, "initial_scale": 1}}


async def wait_for(
    backend: LocalBackend,
    name: str,
    check: Callable[[ObservedService], bool],
    seconds: float = 30,
) -> ObservedService:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        observed = await backend.observe(name)
        if observed is not None and check(observed):
            # and the router routes by what was observed (HAProxy takes a moment more)
            await backend.router.settle()
            return observed
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out; last observed: {observed}")
        await asyncio.sleep(0.05)


def ready(revision: str) -> Callable[[ObservedService], bool]:
    return lambda o: revision in o.revisions and o.revisions[revision].instances.ready >= 1


async def get(backend: LocalBackend, host: str, path: str = "/") -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(
            f"http://127.0.0.1:{backend.router.port}{path}", headers={"Host": host}
        )
