"""A real SOS API server in a thread of the test process (uvicorn, real sockets on
127.0.0.1): ``start_server(data_dir, ...)`` returns a ``RunningServer`` with its URL, admin
token and state. The ``sos_server`` fixture of ``tests/sos/conftest.py`` starts and stops
them for a test."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from sos.client import Client
from sos.config import ServerSettings
from sos.models import Artifact, Revision, Service
from sos.runtime.base import Backend
from sos.server.app import ServerState, create_app


@dataclass
class RunningServer:
    url: str
    admin_token: str
    state: ServerState
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, token: str | None = None) -> Client:
        return Client(self.url, token if token is not None else self.admin_token)

    def token(self, name: str, role: str = "writer", team: str | None = None) -> str:
        with self.client() as admin:
            return admin.create_token(name, role=role, team=team).secret  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def start_server(
    data_dir: Path,
    *,
    database_url: str | None = None,
    backend: Backend | None = None,
    **settings: Any,
) -> RunningServer:
    config = ServerSettings(
        data_dir=data_dir, database_url=database_url, backend="fake", **settings
    )
    state = ServerState.open(config, backend=backend)
    app = create_app(state=state)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the SOS API server did not start")
        time.sleep(0.01)
    if config.admin_token:
        token = config.admin_token
    else:
        assert state.admin_token is not None and state.admin_token.path is not None
        token = state.admin_token.path.read_text().strip()
    return RunningServer(f"http://127.0.0.1:{port}", token, state, server, thread)


def deploy_canary_ready(client: Client, service: str, versions: int = 2) -> None:
    """Revisions 1..``versions`` of ``service`` (artifact ``shop_app`` v1, v2, ...: the
    first has all traffic), once the server samples the newest one's counters, so that what
    it serves from then on counts (a router's counters start at zero with a revision)."""
    for number in range(1, versions + 1):
        client.deploy(
            Service(name=service, team="recs"),
            Revision(artifact=Artifact(name="shop_app", version=f"v{number}")),
        )
    wait_sampled(client, service, versions)


def wait_sampled(client: Client, service: str, revision: int) -> None:
    """Until the server has sampled ``revision``'s request counters at least twice."""
    deadline = time.monotonic() + 20
    while True:
        series = client.metrics(service, window="1m").revision(revision)
        if series is not None and series.points:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the server never sampled revision {revision} of {service}")
        time.sleep(0.05)
