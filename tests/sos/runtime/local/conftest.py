"""Fixtures of the LocalBackend tests: a started backend on a free router port, and
waiting for what the backend observes (never for a fixed time)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from sos_harness import ServerProcess, kill_instances
from sos_runtime import artifact_paths

from sos.runtime.local.backend import LocalBackend
from sos.runtime.local.ingress import Ingress, create_ingress


@pytest.fixture(params=["python", "haproxy"])
def data_path(request: pytest.FixtureRequest) -> str:
    """The router's data path under test (``LocalBackend(data_path=...)``)."""
    if request.param == "haproxy" and shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (scripts/setup installs it)")
    return str(request.param)


@pytest.fixture
async def ingress_factory() -> AsyncIterator[Callable[..., Awaitable[Ingress]]]:
    """``make(data_path, **options)``: a started router of that data path on a free port
    (activation_timeout 5 s unless given), closed at the end."""
    started: list[Ingress] = []

    async def make(data_path: str, **options: float) -> Ingress:
        if data_path == "haproxy" and shutil.which("haproxy") is None:
            pytest.skip("HAProxy is not installed (scripts/setup installs it)")
        options.setdefault("activation_timeout", 5)
        router = create_ingress(data_path, port=0, **options)  # type: ignore[arg-type]
        await router.start()
        started.append(router)
        return router

    yield make
    for router in started:
        await router.close()


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
