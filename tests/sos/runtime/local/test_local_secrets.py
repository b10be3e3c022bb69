"""A secret reaches its instances as an environment variable, and only them; a rotated value
reaches instances started after the rotation; a revision whose secret is gone fails with
the reason."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from sos_local import FAST, get, wait_for
from sos_runtime import make_desired

from sos.runtime.local.backend import LocalBackend

USES = {**FAST, "env_vars": [{"id": "DB_PASSWORD", "secret": "db-password"}]}


async def test_instances_get_the_secret_value_and_new_ones_get_a_rotated_value(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    desired = make_desired("shop", [(1, hello_pyz, USES)], {1: 100})
    await backend.apply(dataclasses.replace(desired, secrets={"db-password": "s3cret"}))
    await wait_for(backend, "shop", lambda o: o.ready)
    env = (await get(backend, "shop.localhost", "/env")).json()
    assert env["DB_PASSWORD"] == "s3cret"
    # the platform logs never carry it
    lines = [line.text async for line in backend.logs("shop", tail=500)]
    assert not any("s3cret" in text for text in lines)

    await backend.apply(dataclasses.replace(desired, secrets={"db-password": "rotated"}))
    (old,) = backend.supervisor.revisions["shop-00001"].instances.values()
    backend.supervisor._kill(old, signal.SIGKILL)  # a crash: a new instance starts
    await wait_for(
        backend,
        "shop",
        lambda o: o.ready and old.id not in backend.supervisor.revisions["shop-00001"].instances,
    )
    env = (await get(backend, "shop.localhost", "/env")).json()
    assert env["DB_PASSWORD"] == "rotated"


async def test_a_revision_whose_secret_is_gone_fails_with_the_reason(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    backend = await backend_factory()
    await backend.apply(make_desired("shop", [(1, hello_pyz, USES)], {1: 100}))
    observed = await wait_for(backend, "shop", lambda o: o.revisions["shop-00001"].failed)
    revision = observed.revisions["shop-00001"]
    assert revision.reason == "SecretMissing"
    assert revision.message is not None and "db-password" in revision.message
