"""HTTP probes against a real instance: what counts as healthy, and what the user is told."""

from __future__ import annotations

import asyncio

from sos_runtime import StartApp, free_port

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


async def test_a_forwarder_with_nothing_behind_it_is_not_an_open_port() -> None:
    # an instance's own network: pasta accepts on the host port and closes the connection
    # at once while nothing listens inside; that is not "open", nor an HTTP answer
    async def close_at_once(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        ok, what = await probe("127.0.0.1", port, None, 1)
        assert not ok and "closed the connection at once" in what
        ok, what = await probe("127.0.0.1", port, "/ready", 1)
        assert not ok and "nothing listens on its port yet" in what
