"""Helpers for serving tests: a real uvicorn server in a thread, polling, test operators."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import uvicorn

import flight.operators as fo


class ServerThread:
    """Serves an ASGI app with uvicorn (lifespan on) on a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="on", loop="asyncio", http="h11"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


def wait_for(check: Callable[[], Any], timeout: float = 15.0, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (bounded; for file watching)."""
    end = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s (last: {got!r})")
        time.sleep(every)


class SlowItems(fo.SourceOperator):
    """Returns ``ids`` after ``seconds`` (an asyncio sleep: cancellable by a deadline)."""

    ids: list[int]
    seconds: float = 0.0
    column: str = "slow"

    async def __call__(self, **ctx: Any) -> fo.Source:
        if self.seconds:
            await asyncio.sleep(self.seconds)
        return fo.Source(pd.DataFrame({"item": self.ids, self.column: [1.0] * len(self.ids)}))
