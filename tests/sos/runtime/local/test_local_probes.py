"""HTTP probes against a real instance: what counts as healthy, and what the user is told."""

from __future__ import annotations

from tests.sos.runtime.conftest import StartApp, free_port

from sos.runtime.local.probes import probe


async def test_a_2xx_answer_is_healthy(start_app: StartApp) -> None:
    app = start_app("shop-00001")
    assert await probe("127.0.0.1", app.port, "/ready", 2) == (True, "GET /ready -> 200")


async def test_a_5xx_answer_is_unhealthy_and_says_the_status(start_app: StartApp) -> None:
    app = start_app("shop-00001", HELLO_NEVER_READY="1")
    assert await probe("127.0.0.1", app.port, "/ready", 2) == (False, "GET /ready -> HTTP 503")


async def test_a_slow_answer_times_out(start_app: StartApp) -> None:
    app = start_app("shop-00001")
    ok, what = await probe("127.0.0.1", app.port, "/slow?ms=2000", 0.2)
    assert not ok
    assert what == "no answer to GET /slow?ms=2000 within 0.2s"


async def test_nothing_listening_is_unhealthy() -> None:
    ok, what = await probe("127.0.0.1", free_port(), "/", 1)
    assert not ok
    assert what.startswith("cannot connect to port")


async def test_without_a_path_an_open_port_is_enough(start_app: StartApp) -> None:
    app = start_app("shop-00001", HELLO_NEVER_READY="1")
    assert await probe("127.0.0.1", app.port, None, 1) == (True, "port open")
