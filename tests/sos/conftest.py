"""Fixtures for the SOS control plane: databases (SQLite always, PostgreSQL when its binaries
are installed) and a real API server on a free port of 127.0.0.1.

- ``database_url``: parametrized over ``sqlite`` and ``postgresql``; each test gets a fresh
  database. PostgreSQL is a throwaway cluster (``initdb`` + ``pg_ctl``, run as the
  ``postgres`` user when we are root) started once per session in a temp dir and torn down
  at the end; without the binaries those cases skip with the reason.
- ``sos_server``: ``start_server(tmp_path, ...)`` returns a ``RunningServer`` (uvicorn in a
  thread, real sockets) with its URL, admin token and state; stopped after the test.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sos_server import RunningServer, deploy_canary_ready, start_server

from sos.client import Client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class PostgresCluster:
    port: int
    host: str = "127.0.0.1"

    def create_database(self) -> str:
        import psycopg

        name = "sos_" + uuid.uuid4().hex[:12]
        with psycopg.connect(
            host=self.host, port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{name}"


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) are not installed: apt-get install postgresql"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'flight-sos[postgres]'")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as 'postgres'")
    root = Path(tempfile.mkdtemp(prefix="sos-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
    subprocess.run(
        _as_postgres(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    port = 0
    for _ in range(5):
        port = free_port()
        result = subprocess.run(
            _as_postgres(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(root / "log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "start",
                ]
            ),
            capture_output=True,
        )
        if result.returncode == 0:
            break
    else:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        pytest.fail(f"PostgreSQL did not start: {result.stderr.decode()} {log[-2000:]}")
    try:
        yield PostgresCluster(port=port)
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sos.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.create_database()


# --------------------------------------------------------------------------- API server


@pytest.fixture
def sos_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """``sos_server(**options)`` starts a server (SQLite in tmp_path unless told otherwise)."""
    started: list[RunningServer] = []

    def start(**options: Any) -> RunningServer:
        data_dir = options.pop("data_dir", tmp_path / f"data{len(started)}")
        running = start_server(data_dir, **options)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def server(sos_server: Callable[..., RunningServer]) -> RunningServer:
    return sos_server()


@pytest.fixture
def admin(server: RunningServer) -> Iterator[Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def fast_rollouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers started from now on sample metrics every 0.2 s and move rollouts every 0.1 s."""
    monkeypatch.setenv("SOS_METRICS_INTERVAL", "0.2")
    monkeypatch.setenv("SOS_ROLLOUT_TICK", "0.1")


@pytest.fixture
def rollout_shop(fast_rollouts: None, sos_server: Callable[..., RunningServer]) -> RunningServer:
    """A fast server (fake backend) with service shop: revision 1 has all the traffic,
    revision 2 none, and the server samples revision 2's counters already."""
    server = sos_server()
    with server.client() as client:
        deploy_canary_ready(client, "shop")
    return server
