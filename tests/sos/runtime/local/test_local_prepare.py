"""Python artifacts are prepared (shiv unpacks them, then they are compiled) once per
service and digest, in the background, before their first instance starts; a failed
prepare is a clear revision failure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sos_local import FAST, get, wait_for
from sos_runtime import build_shiv, make_desired

from sos.runtime.local.backend import LocalBackend
from sos.runtime.local.prepare import unpack_dir

BROKEN_LAUNCHER = """
import os, sys

def main():
    if os.environ.get("SOS_PREPARE_ONLY"):
        print("cannot unpack: No space left on device", file=sys.stderr)
        sys.exit(5)
"""


async def test_two_revisions_of_one_artifact_are_prepared_once_before_they_start(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_shiv: Path
) -> None:
    backend = await backend_factory(hello_shiv)
    desired = make_desired("shop", [(1, hello_shiv, FAST), (2, hello_shiv, FAST)], {1: 50, 2: 50})
    await backend.apply(desired)
    await wait_for(backend, "shop", lambda o: o.ready)

    # one unpacked copy, compiled, where every instance of the service looks for it
    root = backend.sandbox.shiv_root("shop")
    unpacked = unpack_dir(hello_shiv, root)
    assert unpacked is not None and (unpacked / "site-packages" / "hello_app").is_dir()
    assert list((unpacked / "site-packages" / "hello_app" / "__pycache__").glob("*.pyc"))
    assert [p.name for p in root.iterdir() if p.is_dir()] == [unpacked.name]
    env = (await get(backend, "shop.localhost", "/env")).json()
    assert env["SHIV_ROOT"] == "/home/sos/.shiv"  # the service's own copy, read-only to it

    lines = [line async for line in backend.logs("shop", tail=200)]
    prepared = [line for line in lines if "prepared in" in line.text]
    assert len(prepared) == 1  # one run for the digest, shared by both revisions
    starts = [line for line in lines if line.text.startswith("started instance")]
    assert len(starts) == 2
    assert all(prepared[0].at <= start.at for start in starts)


async def test_an_artifact_unpacked_before_a_restart_is_not_prepared_again(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_shiv: Path
) -> None:
    first = await backend_factory(hello_shiv)
    await first.apply(make_desired("shop", [(1, hello_shiv, FAST)], {1: 100}))
    await wait_for(first, "shop", lambda o: o.ready)
    first.stop_on_close = True
    await first.close()

    second = await backend_factory(hello_shiv)  # the same data dir
    await second.apply(
        make_desired("shop", [(1, hello_shiv, FAST), (2, hello_shiv, FAST)], {2: 100})
    )
    await wait_for(second, "shop", lambda o: o.ready)
    lines = [line.text async for line in second.logs("shop", "shop-00002", tail=100)]
    assert any(text.startswith("started instance") for text in lines)
    assert not any("prepar" in text for text in lines)
    assert (await get(second, "shop.localhost")).status_code == 200

    # another service never shares the copy of the first (it could not write into it,
    # and must not be able to change what the first one runs): it prepares its own
    await second.apply(make_desired("cart", [(1, hello_shiv, FAST)], {1: 100}))
    await wait_for(second, "cart", lambda o: o.ready)
    lines = [line.text async for line in second.logs("cart", tail=100)]
    assert any("prepared in" in text for text in lines)
    assert second.sandbox.shiv_root("cart") != second.sandbox.shiv_root("shop")


async def test_a_plain_zipapp_is_not_prepared(
    backend_factory: Callable[..., Awaitable[LocalBackend]], hello_pyz: Path
) -> None:
    # it does not know SOS_PREPARE_ONLY: running it would serve, not unpack and exit
    assert unpack_dir(hello_pyz, Path("/nowhere")) is None
    backend = await backend_factory()
    await backend.apply(make_desired("shop", [(1, hello_pyz, FAST)], {1: 100}))
    await wait_for(backend, "shop", lambda o: o.ready)
    lines = [line.text async for line in backend.logs("shop", tail=100)]
    assert not any("prepar" in text for text in lines)


async def test_a_failed_prepare_fails_the_revision_with_its_output(
    backend_factory: Callable[..., Awaitable[LocalBackend]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    broken = build_shiv(tmp_path_factory.mktemp("broken") / "broken.pyz", BROKEN_LAUNCHER)
    backend = await backend_factory(broken)
    await backend.apply(make_desired("shop", [(1, broken, FAST)], {1: 100}))
    observed = await wait_for(backend, "shop", lambda o: o.revisions["shop-00001"].failed)
    revision = observed.revisions["shop-00001"]
    assert revision.reason == "PrepareFailed"
    assert revision.message is not None
    assert "preparing the artifact exited with code 5" in revision.message
    assert "No space left on device" in revision.message
    assert backend.supervisor.revisions["shop-00001"].instances == {}  # nothing started
    answer = await get(backend, "shop.localhost")
    assert answer.status_code == 503
    assert "its revision shop-00001 failed (preparing the artifact exited with code 5)" in (
        answer.text
    )
    # the command, its paths and the log lines are for the owners, not the callers
    assert "No space left on device" not in answer.text and str(broken) not in answer.text
