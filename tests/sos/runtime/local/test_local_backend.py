"""LocalBackend end to end with real artifacts: processes, probes, router, autoscaler."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sos_local import FAST, get, ready, wait_for
from sos_runtime import make_desired

from sos.errors import ValidationError
from sos.models import RevisionSpec
from sos.runtime.base import DesiredService
from sos.runtime.local import procs
from sos.runtime.local import sandbox as sandbox_module
from sos.runtime.local.backend import LocalBackend
from sos.runtime.local.network import egress_rules
from sos.runtime.local.supervisor import Instance

ARTIFACT = {"artifact": {"name": "hello", "version": "1"}}


async def serving(backend: LocalBackend, artifact: Path) -> Instance:
    """Deploy shop-00001 with one instance, wait until it serves; return the instance."""
    await backend.apply(make_desired("shop", [(1, artifact, FAST)], {1: 100}))
    await wait_for(backend, "shop", lambda o: o.ready)
    (instance,) = backend.supervisor.revisions["shop-00001"].instances.values()
    return instance


async def exit_code(instance: Instance) -> int | None:
    """Wait (up to 10 s) for a process this test started to end; its exit code."""
    assert instance.process is not None
    for _ in range(200):
        if instance.process.poll() is not None:
            break
        await asyncio.sleep(0.05)
    return instance.process.returncode


async def test_python_revision_becomes_ready_and_answers_through_the_router(
    backend_factory: Callable[..., Awaitable[LocalBackend]],
    hello_pyz: Path,
    monkeypatch: pytest.MonkeyPatch,
    data_path: str,
) -> None:
    monkeypatch.setenv("SERVER_SECRET", "not for instances")
    backend = await backend_factory(data_path=data_path)
    spec = {**FAST, "env_vars": [{"id": "GREETING", "value": "hi"}]}
    desired = make_desired("shop", [(1, hello_pyz, spec)], {1: 100})
    await backend.apply(desired)
    observed = await wait_for(backend, "shop", lambda o: o.ready)
    assert observed.url == f"http://shop.localhost:{backend.router.port}"
    assert observed.revisions["shop-00001"].instances.ready == 1
    response = await get(backend, "shop.localhost")
    assert response.status_code == 200
    assert response.headers["sos-revision"] == "shop-00001"
    env = (await get(backend, "shop.localhost", "/env")).json()
    assert env["GREETING"] == "hi"
    assert env["SOS_REVISION"] == "shop-00001" and env["SOS_SERVICE"] == "shop"
    assert env["HOST"] == "127.0.0.1" and env["PORT"].isdigit()
    assert "PATH" in env
    assert "SERVER_SECRET" not in env  # the server's own environment stays with the server
    await backend.apply(desired)  # idempotent: nothing new starts
    assert len(backend.supervisor.revisions["shop-00001"].instances) == 1


async def test_go_binary_runs_beside_python_with_a_split(
    backend_factory: Callable[..., Awaitable[LocalBackend]],
    hello_pyz: Path,
    hello_go: Path,
    data_path: str,
) -> None:
    backend = await backend_factory(hello_go, data_path=data_path)
    desired = make_desired(
        "shop", [(1, hello_pyz, FAST), (2, hello_go, FAST)], {1: 70, 2: 30}, tags={2: "go"}
    )
    await backend.apply(desired)
    observed = await wait_for(backend, "shop", lambda o: o.ready)
    assert observed.tag_urls == {"go": f"http://go-shop.localhost:{backend.router.port}"}
    seen = Counter(
        [(await get(backend, "shop.localhost")).headers["sos-revision"] for _ in range(20)]
    )
    assert seen == {"shop-00001": 14, "shop-00002": 6}
    tagged = await get(backend, "go-shop.localhost")
    assert tagged.text == "hello from shop-00002 (go)\n"


async def test_crashed_instance_is_replaced(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    await backend.apply(make_desired("shop", [(1, hello_pyz, FAST)], {1: 100}))
    await wait_for(backend, "shop", lambda o: o.ready)
    runtime = backend.supervisor.revisions["shop-00001"]
    (first,) = runtime.instances.values()
    await get(backend, "shop.localhost", "/crash")
    await wait_for(
        backend,
        "shop",
        lambda o: o.ready and first.id not in runtime.instances and len(runtime.ready()) == 1,
    )
    (second,) = runtime.instances.values()
    assert second.pid != first.pid
    assert (await get(backend, "shop.localhost")).status_code == 200
    lines = [line.text async for line in backend.logs("shop", "shop-00001", tail=50)]
    assert any(f"instance {first.id}" in t and "exited with code 3" in t for t in lines)


async def test_liveness_failure_kills_and_replaces_the_instance(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    spec = {
        **FAST,
        "health_check": {
            "liveness_probe": "/live",
            "readiness_probe": "/ready",
            "period_seconds": 0.1,
            "failure_threshold": 2,
        },
    }
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    await wait_for(backend, "shop", lambda o: o.ready)
    runtime = backend.supervisor.revisions["shop-00001"]
    (first,) = runtime.instances.values()
    await get(backend, "shop.localhost", "/sick")
    await wait_for(backend, "shop", lambda o: first.id not in runtime.instances and o.ready)
    lines = [line.text async for line in backend.logs("shop", tail=100)]
    assert any("liveness probe failed" in t for t in lines)


async def test_revision_that_crashes_at_start_is_failed_with_its_last_log_lines(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    spec = {**FAST, "env_vars": [{"id": "HELLO_FAIL", "value": "missing DB_URL"}]}
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    observed = await wait_for(backend, "shop", lambda o: o.revisions["shop-00001"].failed)
    revision = observed.revisions["shop-00001"]
    assert not revision.ready
    assert revision.reason == "CrashLoop"
    assert revision.message is not None
    assert "exited with code 2" in revision.message
    assert "failing on purpose: missing DB_URL" in revision.message
    assert observed.reason == "RevisionFailed"
    # callers get one line that says what failed; the log lines are for its owners
    response = await get(backend, "shop.localhost")
    assert response.status_code == 503
    assert response.text.startswith(
        "service 'shop' is unavailable: its revision shop-00001 failed (the instance exited "
        "with code 2 before ready"
    )
    assert "`sos logs shop --revision 1`" in response.text
    assert "missing DB_URL" not in response.text and response.text.count("\n") == 1


async def test_a_failed_revision_quotes_its_traceback_not_the_noise_after_it(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    why = "MovieLens file ratings.csv not found; set MOVIELENS_DIR"
    spec = {**FAST, "env_vars": [{"id": "HELLO_RAISE", "value": why}]}
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    observed = await wait_for(backend, "shop", lambda o: o.revisions["shop-00001"].failed)
    message = observed.revisions["shop-00001"].message
    assert message is not None
    first, *quoted = message.splitlines()
    assert first.endswith("starts in a row; its last error:")
    assert quoted[0] == "[stderr] Traceback (most recent call last):"
    assert quoted[-1] == f"[stderr] FileNotFoundError: {why}"
    assert not any("exiting (pid" in line for line in quoted)
    response = await get(backend, "shop.localhost")  # callers see none of it
    assert response.status_code == 503 and "FileNotFoundError" not in response.text
    assert "failed (the instance exited with code 3 before ready" in response.text


async def test_revision_that_never_gets_ready_fails_after_the_startup_timeout(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    spec = {
        **FAST,
        "env_vars": [{"id": "HELLO_NEVER_READY", "value": "1"}],
        "health_check": {"readiness_probe": "/ready", "startup_timeout_seconds": 1},
    }
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    observed = await wait_for(backend, "shop", lambda o: o.revisions["shop-00001"].failed)
    revision = observed.revisions["shop-00001"]
    assert revision.reason == "NotReady"
    assert revision.message is not None and "was not ready 1s after it started" in revision.message
    assert "readiness probe: GET /ready -> HTTP 503" in revision.message


async def test_scale_to_zero_then_the_activator_wakes_the_revision(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path, data_path: str
) -> None:
    backend = await backend_factory(autoscale_seconds=0.2, data_path=data_path)
    spec = {"autoscaling": {"min_scale": 0, "scale_to_zero_grace_seconds": 0.5}}
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    await wait_for(backend, "shop", ready("shop-00001"))
    runtime = backend.supervisor.revisions["shop-00001"]
    scaled = await wait_for(
        backend,
        "shop",
        lambda o: o.revisions["shop-00001"].instances.running == 0 and not runtime.instances,
    )
    assert scaled.revisions["shop-00001"].ready  # scaled to zero is still Ready
    assert scaled.revisions["shop-00001"].instances.wanted == 0
    response = await get(backend, "shop.localhost")  # held by the activator, then served
    assert response.status_code == 200
    assert response.headers["sos-revision"] == "shop-00001"


async def test_restart_re_adopts_running_instances_without_duplicates(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    desired = make_desired("shop", [(1, hello_pyz, FAST)], {1: 100})
    first = await backend_factory()
    await first.apply(desired)
    await wait_for(first, "shop", lambda o: o.ready)
    (instance,) = first.supervisor.revisions["shop-00001"].instances.values()
    await first.close()  # leaves the instance running
    os.kill(instance.pid, 0)

    second = await backend_factory()
    assert await second.list_services() == ["shop"]
    await second.apply(desired)
    observed = await wait_for(second, "shop", lambda o: o.ready)
    assert observed.revisions["shop-00001"].instances.running == 1
    (again,) = second.supervisor.revisions["shop-00001"].instances.values()
    assert (again.id, again.pid) == (instance.id, instance.pid)
    assert (await get(second, "shop.localhost")).status_code == 200
    state = json.loads((second.supervisor.state_file).read_text())
    assert [r["pid"] for r in state["instances"]] == [instance.pid]


async def test_restart_kills_stray_instances_it_cannot_adopt(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    first = await backend_factory()
    instance = await serving(first, hello_pyz)
    await first.close()
    first.supervisor.state_file.write_text('{"instances": []}')  # the record is lost

    assert instance.network is not None and instance.network.netns.exists()
    await backend_factory()
    assert await exit_code(instance) == -signal.SIGKILL
    # and its network goes too: its pasta stopped, its namespace's file removed
    assert not instance.network.netns.exists()
    for _ in range(100):  # (a zombie here: the first backend, its parent, is this process)
        if not procs.alive(instance.network.pasta):
            break
        await asyncio.sleep(0.05)
    assert not procs.alive(instance.network.pasta)


async def test_orphans_are_listed_and_deleted(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    first = await backend_factory()
    instance = await serving(first, hello_pyz)
    await first.close()
    second = await backend_factory()
    assert await second.list_services() == ["shop"]  # known only from the state file
    await second.delete("shop")
    assert await exit_code(instance) is not None
    assert await second.list_services() == []


async def test_delete_stops_every_instance(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path, data_path: str
) -> None:
    backend = await backend_factory(data_path=data_path)
    instance = await serving(backend, hello_pyz)
    await backend.delete("shop")
    assert await backend.observe("shop") is None
    assert (await get(backend, "shop.localhost")).status_code == 404
    assert await exit_code(instance) is not None


async def test_logs_have_the_output_and_the_platform_events(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    await backend.apply(make_desired("shop", [(1, hello_pyz, FAST)], {1: 100}))
    await wait_for(backend, "shop", lambda o: o.ready)
    await get(backend, "shop.localhost", "/hello-log")
    for _ in range(300):  # the app writes its access line just after it answers
        lines = [line async for line in backend.logs("shop", tail=100)]
        if any("/hello-log" in line.text for line in lines):
            break
        await asyncio.sleep(0.05)
    streams = {(line.stream, line.text.split(" ")[0]) for line in lines}
    assert ("stdout", "hello") in streams
    assert any(line.stream == "stderr" and "/hello-log" in line.text for line in lines)
    ready = [line for line in lines if line.stream == "platform" and "ready after" in line.text]
    assert ready and ready[0].text.startswith("instance shop-00001-")  # its time is in .at
    follow = backend.logs("shop", tail=0, follow=True)

    async def until_followed() -> str:
        async for line in follow:
            if "/followed" in line.text:
                return line.text
        return ""

    waiting = asyncio.ensure_future(until_followed())
    await asyncio.sleep(0)  # the follower is registered: it sees every line from now on
    await get(backend, "shop.localhost", "/followed")
    assert "GET /followed" in await asyncio.wait_for(waiting, 10)
    await follow.aclose()


async def test_missing_artifact_is_a_clear_failure(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    desired = make_desired("shop", [(1, hello_pyz, FAST)], {1: 100})
    broken = DesiredService(desired.service, desired.revisions, desired.traffic, {})
    await backend.apply(broken)
    observed = await wait_for(backend, "shop", lambda o: o.revisions["shop-00001"].failed)
    revision = observed.revisions["shop-00001"]
    assert revision.reason == "ArtifactMissing"
    assert revision.message is not None and "sos push" in revision.message


async def test_memory_limit_is_applied_to_the_instance(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    spec = {**FAST, "resources": {"memory": "128Mi", "cpu": "250m"}}
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    await wait_for(backend, "shop", lambda o: o.ready)
    (instance,) = backend.supervisor.revisions["shop-00001"].instances.values()
    assert (await get(backend, "shop.localhost", "/alloc?mb=16")).status_code == 200
    if backend.limiter.cgroups:
        group = backend.limiter.root / instance.id
        assert (group / "memory.max").read_text().strip() == str(128 * 2**20)
        assert (group / "cpu.max").read_text().split()[0] == "25000"
    else:  # RLIMIT_DATA: an allocation above the limit fails inside the app
        # and the CPU limit it cannot enforce is said, at start and in the instance's log
        assert "CPU limits NOT enforced" in backend.isolation
        lines = [line.text async for line in backend.logs("shop", None, tail=50, follow=False)]
        assert any("CPU limit (250m) is not enforced" in text for text in lines), lines
        limits = await asyncio.to_thread(Path(f"/proc/{instance.pid}/limits").read_text)
        assert f"Max data size             {128 * 2**20}" in limits
        too_much = await get(backend, "shop.localhost", "/alloc?mb=512")
        assert too_much.status_code == 500 and too_much.text == "MemoryError\n"


async def test_initial_scale_zero_is_ready_at_once_and_starts_on_the_first_request(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    spec = {"autoscaling": {"min_scale": 0, "initial_scale": 0}}
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    observed = await wait_for(backend, "shop", lambda o: o.ready)
    revision = observed.revisions["shop-00001"]
    assert revision.instances.running == 0
    assert revision.message == "no instance until the first request (initial_scale 0)"
    response = await get(backend, "shop.localhost")
    assert response.status_code == 200
    assert len(backend.supervisor.revisions["shop-00001"].ready()) == 1


async def test_a_port_taken_before_the_instance_binds_it_is_retried_at_once(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path, tmp_path: Path
) -> None:
    # the app fails its first start through a file of the test's (no sandbox, to see it)
    backend = await backend_factory(sandbox="none")
    marker = tmp_path / "port-taken-once"
    spec = {**FAST, "env_vars": [{"id": "HELLO_PORT_TAKEN_ONCE", "value": str(marker)}]}
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    await wait_for(backend, "shop", lambda o: o.ready)
    assert marker.exists()  # the first start did fail
    runtime = backend.supervisor.revisions["shop-00001"]
    assert runtime.failed_starts == 0 and runtime.next_start == 0.0  # no backoff for it
    lines = [line.text async for line in backend.logs("shop", tail=50)]
    assert any("its port was taken meanwhile; retrying on another" in t for t in lines)


async def test_concurrent_load_scales_a_revision_out(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path, data_path: str
) -> None:
    backend = await backend_factory(autoscale_seconds=0.2, data_path=data_path)
    spec = {
        "autoscaling": {
            "min_scale": 1,
            "max_scale": 3,
            "target_concurrency": 1,
            "target_utilization_percentage": 100,
            "stable_window_seconds": 6,
        }
    }
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    await wait_for(backend, "shop", lambda o: o.ready)
    runtime = backend.supervisor.revisions["shop-00001"]
    load = [
        asyncio.ensure_future(get(backend, "shop.localhost", "/slow?ms=2500")) for _ in range(6)
    ]
    observed = await wait_for(
        backend, "shop", lambda o: o.revisions["shop-00001"].instances.ready >= 2, 20
    )
    assert observed.revisions["shop-00001"].instances.wanted <= 3  # max_scale holds
    assert runtime.wanted >= 2
    assert {r.status_code for r in await asyncio.gather(*load)} == {200}


async def test_restart_does_not_start_revisions_that_had_scaled_to_zero(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    idle = {"autoscaling": {"min_scale": 0, "scale_to_zero_grace_seconds": 0.5}}
    desired = make_desired("shop", [(1, hello_pyz, FAST), (2, hello_pyz, idle)], {1: 100})
    first = await backend_factory(autoscale_seconds=0.2)
    await first.apply(desired)
    await wait_for(first, "shop", ready("shop-00002"))  # its initial instance, once
    await wait_for(first, "shop", lambda o: o.revisions["shop-00002"].instances.running == 0)
    await first.close()

    second = await backend_factory(autoscale_seconds=0.2)
    await second.apply(desired)
    await asyncio.sleep(1.5)  # several autoscaler rounds
    observed = await wait_for(second, "shop", lambda o: o.ready)
    assert observed.revisions["shop-00002"].instances.running == 0
    assert observed.revisions["shop-00002"].ready
    assert observed.revisions["shop-00001"].instances.running == 1  # re-adopted, not doubled


def test_server_options_that_are_not_numbers_are_clear_errors(tmp_path: Path) -> None:
    from sos.errors import ValidationError
    from sos.runtime.local.backend import create_backend
    from sos.server.backends import BackendContext

    context = BackendContext(data_dir=tmp_path, options={"router_port": "eighty"})
    with pytest.raises(ValidationError, match=r"router_port .* must be a number, not 'eighty'"):
        create_backend(context)


async def test_a_service_named_like_the_domain_cannot_take_the_path_urls(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path, data_path: str
) -> None:
    backend = await backend_factory(data_path=data_path)
    await backend.apply(make_desired("shop", [(1, hello_pyz, FAST)], {1: 100}))
    await backend.apply(make_desired("localhost", [(1, hello_pyz, FAST)], {1: 100}))
    await wait_for(backend, "shop", lambda o: o.ready)
    await wait_for(backend, "localhost", lambda o: o.ready)
    # the URLs the platform prints for shop (http://localhost:PORT/s/shop/, /r/shop-00001/)
    by_name = await get(backend, "localhost", "/s/shop/")
    by_revision = await get(backend, "localhost", "/r/shop-00001/")
    assert by_name.headers["sos-revision"] == "shop-00001"
    assert by_revision.headers["sos-revision"] == "shop-00001"
    own = await get(backend, "localhost.localhost", "/")  # its own address still works
    assert own.headers["sos-revision"] == "localhost-00001"


async def test_a_revision_s_port_is_where_its_app_listens_in_a_network_of_its_own(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    # two instances of one revision and another service, all on port 9000: each instance
    # has its own loopback, and the router reaches each through its own host port
    backend = await backend_factory()
    spec = {"port": 9000, "autoscaling": {"min_scale": 2, "initial_scale": 2}}
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    await backend.apply(make_desired("cart", [(1, hello_pyz, {**FAST, "port": 9000})], {1: 100}))
    await wait_for(backend, "shop", lambda o: o.revisions["shop-00001"].instances.ready == 2)
    await wait_for(backend, "cart", lambda o: o.ready)
    for host in ("shop.localhost", "cart.localhost"):
        env = (await get(backend, host, "/env")).json()
        assert env["PORT"] == "9000" and env["HOST"] == "127.0.0.1"
    shop = backend.supervisor.revisions["shop-00001"].instances.values()
    assert len({i.port for i in shop}) == 2  # two host ports, one app port
    # an instance that ends takes its network with it: no pasta, no namespace file left
    networks = [i.network for i in shop if i.network is not None]
    assert len(networks) == 2
    await backend.delete("shop")

    def left() -> list[str]:
        files = [str(n.netns) for n in networks if n.netns.exists()]
        return files + [f"pasta {n.pasta}" for n in networks if Path(f"/proc/{n.pasta}").exists()]

    for _ in range(200):
        if not await asyncio.to_thread(left):
            break
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(left) == []


def test_a_port_is_refused_where_instances_share_the_host_network(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "data", router_port=0, sandbox="none")
    with pytest.raises(ValidationError, match="share the host's network") as caught:
        backend.check_revision(RevisionSpec.model_validate({**ARTIFACT, "port": 9000}))
    assert caught.value.details == {"field": "port"}
    backend.check_revision(RevisionSpec.model_validate(ARTIFACT))  # no port: fine


def test_an_instance_s_egress_rules_refuse_every_address_of_the_host() -> None:
    # pasta connects from the host's own sockets: an address of the host (a second
    # interface, a bridge), link-local IPv6, multicast and broadcast would reach the host's
    # services that listen on all addresses
    rules = egress_rules(
        ["127.0.0.1", "::1", "192.0.2.2", "172.17.0.1", "fd00::2", "fe80::fc:ff:fe00:1"]
    )
    v4 = next(line for line in rules.splitlines() if "ip daddr" in line)
    v6 = next(line for line in rules.splitlines() if "ip6 daddr" in line)
    for address in ("224.0.0.0/4", "255.255.255.255", "192.0.2.2", "172.17.0.1"):
        assert address in v4
    for address in ("ff00::/8", "fe80::/10", "fd00::2"):
        assert address in v6
    assert "127.0.0.1" not in rules and "::1" not in rules  # its own loopback stays its own
    assert "fe80::fc" not in rules  # inside fe80::/10 already (nft refuses overlaps)
    assert 'oifname "lo" accept' in rules


async def test_an_app_on_the_router_s_own_port_listens_in_its_network_not_on_the_router(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    # the default ports collide: the router on 8080 and the app on 8080. The router reached
    # inside must not take the app's port (the app crash-looped while its probe, and every
    # request, reached the router); here the app's port is the router's, whatever it is
    backend = await backend_factory()
    spec = {**FAST, "port": backend.router.port}
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    await wait_for(backend, "shop", lambda o: o.ready)
    env = (await get(backend, "shop.localhost", "/env")).json()
    assert env["PORT"] == str(backend.router.port)
    assert env["SOS_REVISION"] == "shop-00001"  # the app answered, not the router
    assert env["SOS_ROUTER_URL"] == "http://127.0.0.1:8012"
    (instance,) = backend.supervisor.revisions["shop-00001"].instances.values()
    assert instance.process is not None and instance.process.poll() is None


def test_two_servers_on_one_host_never_share_a_block_of_service_uids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = tmp_path / "uid-blocks.json"
    one, two = tmp_path / "one" / "runtime", tmp_path / "two" / "runtime"
    one.mkdir(parents=True)
    two.mkdir(parents=True)
    monkeypatch.setattr(sandbox_module.zlib, "crc32", lambda _: 42)  # their hashes collide
    first = sandbox_module.claim_uid_block(one, registry)
    second = sandbox_module.claim_uid_block(two, registry)
    assert first == 42 and second == 43
    assert sandbox_module.claim_uid_block(one, registry) == 42  # a restart keeps its block
    shutil.rmtree(tmp_path / "one")  # a server whose data dir is gone frees its block
    three = tmp_path / "three" / "runtime"
    three.mkdir(parents=True)
    assert sandbox_module.claim_uid_block(three, registry) == 42
