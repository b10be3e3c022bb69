"""The server's default memory limit (``default_memory``): a revision that sets none runs
with it, says so in its status, the CLI and its instances' logs, and an app that needs more
fails saying it ran out of memory at that limit; a revision's own limit is unaffected, and
``default_memory=none`` leaves a revision that sets none without a limit. Real processes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from sos_cli import cli_runner
from sos_harness import TOKEN, ServerProcess, publish, until
from sos_local import FAST, get, wait_for
from sos_runtime import make_desired

from sos.cli import _load_commands, app
from sos.client import Client
from sos.models import AppliedLimits, RevisionSpec, ServiceSpec
from sos.runtime.local.backend import LocalBackend
from sos.runtime.local.supervisor import Instance

_load_commands()


async def limit_of(backend: LocalBackend, instance: Instance) -> str:
    """The memory limit an instance's process runs with: its cgroup's ``memory.max``, else
    its ``RLIMIT_DATA`` (``unlimited`` when it has none)."""
    if backend.limiter.cgroups:  # (no cgroup of its own: nothing to limit)
        path = backend.limiter.root / instance.id / "memory.max"
        return path.read_text().strip() if path.exists() else "max"
    limits = await asyncio.to_thread(Path(f"/proc/{instance.pid}/limits").read_text)
    (line,) = [line for line in limits.splitlines() if line.startswith("Max data size")]
    return line.split()[3]


async def test_a_revision_without_a_memory_limit_runs_with_the_servers_default(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory(default_memory="128Mi")
    assert "memory: 128Mi for revisions that set none (default_memory)" in backend.isolation
    roomy = {**FAST, "resources": {"memory": "512Mi"}}
    await backend.apply(make_desired("lean", [(1, hello_pyz, FAST)], {1: 100}))
    await backend.apply(make_desired("roomy", [(1, hello_pyz, roomy)], {1: 100}))
    lean = await wait_for(backend, "lean", lambda o: o.ready)
    assert (await wait_for(backend, "roomy", lambda o: o.ready)).revisions[
        "roomy-00001"
    ].limits == AppliedLimits(memory="512Mi", memory_source="revision")
    # status says what its instances run with, and whose limit it is; the spec keeps None
    assert lean.revisions["lean-00001"].limits == AppliedLimits(
        memory="128Mi", memory_source="server-default"
    )
    assert backend.desired["lean"].revisions[0].resources.memory is None
    (instance,) = backend.supervisor.revisions["lean-00001"].instances.values()
    assert await limit_of(backend, instance) == str(128 * 2**20)
    (other,) = backend.supervisor.revisions["roomy-00001"].instances.values()
    assert await limit_of(backend, other) == str(512 * 2**20)
    env = (await get(backend, "lean.localhost", "/env")).json()
    assert env["SOS_MEMORY_BYTES"] == str(128 * 2**20)
    lines = [line.text async for line in backend.logs("lean", None, tail=50, follow=False)]
    said = "its memory limit: 128Mi, the server's default for revisions without resources.memory"
    assert said in lines, lines
    # the same allocation: past the default it fails, under the revision's own limit it does not
    assert (await get(backend, "roomy.localhost", "/alloc?mb=256")).status_code == 200
    if not backend.limiter.cgroups:  # (cgroup v2: the kernel kills it, as the next test shows)
        too_much = await get(backend, "lean.localhost", "/alloc?mb=256")
        assert too_much.status_code == 500 and too_much.text == "MemoryError\n"


async def test_an_app_that_needs_more_than_the_default_fails_saying_it_is_out_of_memory(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory(default_memory="128Mi")
    loads = {"env_vars": [{"id": "HELLO_LOAD_MB", "value": "192"}]}  # a model of 192 MiB
    roomy = {**FAST, **loads, "resources": {"memory": "512Mi"}}
    await backend.apply(make_desired("lean", [(1, hello_pyz, {**FAST, **loads})], {1: 100}))
    await backend.apply(make_desired("roomy", [(1, hello_pyz, roomy)], {1: 100}))
    await wait_for(backend, "roomy", lambda o: o.ready)
    observed = await wait_for(backend, "lean", lambda o: o.revisions["lean-00001"].failed)
    revision = observed.revisions["lean-00001"]
    assert revision.reason == "CrashLoop"
    assert revision.message is not None
    assert (
        " (out of memory: its limit is 128Mi, the server's default for revisions without "
        "resources.memory) before ready, 3 starts in a row" in revision.message
    ), revision.message
    if not backend.limiter.cgroups:  # the app's own MemoryError is quoted after it
        assert revision.message.endswith("MemoryError"), revision.message


async def test_default_memory_none_leaves_a_revision_without_a_limit(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory(default_memory=None)
    assert "NO memory limit for revisions that set none (default_memory=none)" in (
        backend.isolation
    )
    spec = {**FAST, "env_vars": [{"id": "HELLO_LOAD_MB", "value": "192"}]}
    await backend.apply(make_desired("shop", [(1, hello_pyz, spec)], {1: 100}))
    observed = await wait_for(backend, "shop", lambda o: o.ready)
    limits = observed.revisions["shop-00001"].limits
    assert limits == AppliedLimits(memory=None, memory_source="server-default")
    (instance,) = backend.supervisor.revisions["shop-00001"].instances.values()
    assert await limit_of(backend, instance) in ("unlimited", "max")
    assert (await get(backend, "shop.localhost", "/alloc?mb=256")).status_code == 200
    assert "SOS_MEMORY_BYTES" not in (await get(backend, "shop.localhost", "/env")).json()


def test_users_see_the_default_in_status_the_cli_and_the_servers_start_up_line(
    tmp_path: Path, hello_pyz: Path, servers: list[ServerProcess]
) -> None:
    server = ServerProcess(tmp_path / "data", 0, SOS_DEFAULT_MEMORY="256Mi")
    servers.append(server)
    said = "memory: 256Mi for revisions that set none (default_memory)"
    until(lambda: any(said in line for line in server.output), 10, "the start-up line")
    with Client(server.url, TOKEN) as client:
        publish(client, hello_pyz, "hello", "python")
        client.apply(ServiceSpec(name="shop", team="recs"))
        spec = {"artifact": {"name": "hello", "version": "v1"}, "autoscaling": {"min_scale": 1}}
        client.create_revision("shop", RevisionSpec.model_validate(spec))
        revision = client.wait_ready("shop", 1, timeout=60)
    assert revision.resources.memory is None  # what its author wrote stays
    assert revision.status.limits == AppliedLimits(memory="256Mi", memory_source="server-default")
    sos = cli_runner(server.url, TOKEN, tmp_path)
    shown = sos.invoke(app, ["revision", "show", "shop", "1"])
    assert shown.exit_code == 0, shown.output
    assert "resources:  memory - (its instances run with 256Mi: the server's default), cpu -" in (
        shown.stdout
    )
    as_json = sos.invoke(app, ["revision", "show", "shop", "1", "--json"])
    assert '"memory_source": "server-default"' in as_json.stdout
    assert said in " ".join(sos.invoke(app, ["whoami"]).stdout.split())
