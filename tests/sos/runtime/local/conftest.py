"""Fixtures of the LocalBackend tests: a started backend on a free router port, and
waiting for what the backend observes (never for a fixed time)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.sos.runtime.conftest import artifact_paths
from tests.sos.runtime.harness import ServerProcess, kill_instances

from sos.runtime.base import ObservedService
from sos.runtime.local.backend import LocalBackend

FAST = {"autoscaling": {"min_scale": 1, "initial_scale": 1}}


@pytest.fixture(params=["python", "haproxy"])
def data_path(request: pytest.FixtureRequest) -> str:
    """The router's data path under test (``LocalBackend(data_path=...)``)."""
    if request.param == "haproxy" and shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (scripts/setup installs it)")
    return str(request.param)


@pytest.fixture
async def backend_factory(
    tmp_path: Path, hello_pyz: Path
) -> AsyncIterator[Callable[..., Awaitable[LocalBackend]]]:
    """``make(*more_artifacts, **options)``: a started LocalBackend on a free router port."""
    made: list[LocalBackend] = []

    async def make(*more: Path, **options: object) -> LocalBackend:
        backend = LocalBackend(
            tmp_path / "data",
            artifact_path=artifact_paths(hello_pyz, *more),
            router_port=0,
            **options,  # type: ignore[arg-type]
        )
        await backend.start()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.stop_on_close = True
        await backend.close()


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


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """`sos server` processes a test starts on ``tmp_path / "data"``: stopped (Ctrl-C) at the
    end, their output shown when the test failed, and what a killed one left running (its
    instances, its HAProxy) killed, so a failed test leaves nothing behind."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()
        print("".join(server.output))  # shown by pytest when the test failed
    kill_instances(tmp_path / "data")
