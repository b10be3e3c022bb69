"""Status tells the truth (issue "SOS tells the truth"), with the real hello app:

- a revision whose readiness probe never passes is never Ready, not even after the
  autoscaler's scale-to-zero grace; while it starts its reason is the probe's last answer,
  each failing probe is a platform log line, and past its start-up budget it is Failed
  with the probe's answer as the cause;
- a slow start within its budget comes up, and a cold request waits for it (the budget
  bounds the activator's hold, not the router-wide ``activation_timeout``);
- a deleted service's name, reused, starts clean: a new instance, no old logs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from sos_local import get, ready, wait_for
from sos_runtime import make_desired

from sos.runtime.base import ObservedService
from sos.runtime.local.backend import LocalBackend

NEVER_READY = {
    "env_vars": [{"id": "HELLO_NEVER_READY", "value": "1"}],
    "health_check": {"readiness_probe": "/ready", "startup_timeout_seconds": 4},
    "autoscaling": {"min_scale": 0, "initial_scale": 1, "scale_to_zero_grace_seconds": 0.3},
}


async def platform_lines(backend: LocalBackend, service: str) -> list[str]:
    return [
        line.text async for line in backend.logs(service, tail=1000) if line.stream == "platform"
    ]


async def test_a_probe_that_never_passes_is_never_ready_and_fails_with_the_probe_as_cause(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory(autoscale_seconds=0.1)
    await backend.apply(make_desired("shop", [(1, hello_pyz, NEVER_READY)], {1: 100}))
    seen: list[ObservedService] = []

    def record(observed: ObservedService) -> bool:
        seen.append(observed)
        return observed.revisions["shop-00001"].failed

    failed = await wait_for(backend, "shop", record, seconds=30)
    assert not any(o.revisions["shop-00001"].ready or o.ready for o in seen)
    waiting = [
        o.revisions["shop-00001"].message or ""
        for o in seen
        if "readiness probe" in (o.revisions["shop-00001"].message or "")
    ]
    assert waiting and "GET /ready -> HTTP 503" in waiting[-1]
    assert "start-up budget" in waiting[-1]
    revision = failed.revisions["shop-00001"]
    assert revision.reason == "NotReady" and revision.message is not None
    assert "not ready 4s after it started" in revision.message
    assert "readiness probe: GET /ready -> HTTP 503" in revision.message
    assert "Traceback" not in revision.message
    lines = await platform_lines(backend, "shop")
    assert any("readiness probe failed: GET /ready -> HTTP 503" in line for line in lines)
    # and it stays failed at zero instances
    await asyncio.sleep(1.0)
    after = await backend.observe("shop")
    assert after is not None and after.revisions["shop-00001"].failed
    assert not after.revisions["shop-00001"].ready


async def test_a_slow_start_within_its_budget_comes_up_and_a_cold_request_waits(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory(activation_timeout=0.5)  # the router-wide floor
    spec = {
        "env_vars": [{"id": "HELLO_START_DELAY", "value": "2.5"}],
        "health_check": {"readiness_probe": "/ready", "startup_timeout_seconds": 20},
        "autoscaling": {"min_scale": 0, "initial_scale": 0},
    }
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    await wait_for(backend, "shop", lambda o: o.revisions["shop-00001"].ready)
    response = await get(backend, "shop.localhost")  # from zero: held ~2.5 s, then served
    assert response.status_code == 200, response.text
    assert response.headers["sos-revision"] == "shop-00001"


async def test_a_start_beyond_its_budget_fails(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    spec = {
        "env_vars": [{"id": "HELLO_START_DELAY", "value": "30"}],
        "health_check": {"readiness_probe": "/ready", "startup_timeout_seconds": 1.5},
        "autoscaling": {"min_scale": 1, "initial_scale": 1},
    }
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    failed = await wait_for(backend, "shop", lambda o: o.revisions["shop-00001"].failed)
    message = failed.revisions["shop-00001"].message or ""
    assert "not ready 1.5s after it started" in message
    # what the probe saw: nothing listening (its own network's forwarder closes the
    # connection at once; on the host's network the connection is refused)
    assert "nothing listens on its port yet" in message or "cannot connect" in message


async def test_a_deleted_services_name_reused_starts_clean(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    spec = {"autoscaling": {"min_scale": 1, "initial_scale": 1}}
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    await wait_for(backend, "shop", ready("shop-00001"))
    old = {i.pid for i in backend.supervisor.revisions["shop-00001"].instances.values()}
    assert any("ready after" in line for line in await platform_lines(backend, "shop"))
    await backend.delete("shop")

    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    first = await backend.observe("shop")
    assert first is not None and not first.revisions["shop-00001"].ready  # nothing runs yet
    await wait_for(backend, "shop", ready("shop-00001"))
    new = {i.pid for i in backend.supervisor.revisions["shop-00001"].instances.values()}
    assert new and not (new & old)
    lines = await platform_lines(backend, "shop")
    assert sum("ready after" in line for line in lines) == 1  # the new instance's only
