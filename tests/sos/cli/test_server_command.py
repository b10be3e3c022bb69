"""``sos server`` as a real subprocess: it prints where it listens and where the token is,
state survives a restart, and a second server on a busy port says so."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sos import Artifact, Client, Revision, Service
from sos.artifacts import file_digest
from sos.models import ArtifactMetadata

SVC = "sfix-service"


def push(client: Client, folder: Path, version: str) -> None:
    """`sos server` resolves a revision's artifact in its store: push one first."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"a-{version}.js"
    path.write_text(f"// version {version}\n")
    meta = ArtifactMetadata(
        name="a", version=version, language="node", runtime_version="20",
        entry_point="a.js", digest=file_digest(path), size=path.stat().st_size,
        created_by="test", created_at=datetime.now(UTC),
    )  # fmt: skip
    client.push_artifact(path, metadata=meta)


class ServerProcess:
    def __init__(self, data_dir: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOS_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from sos.cli import main; main()", "server",
             "--port", "0", "--data-dir", str(data_dir), "--resync-seconds", "1",
             "--backend", "fake", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        deadline = time.monotonic() + 30
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if "Application startup complete" in line:
                break
        output = "".join(self.lines)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", output)
        assert match, output
        self.url = match[1]
        self.output = output

    def stop(self) -> str:
        """Ctrl-C, as a person would; returns what the server printed while stopping."""
        self.proc.send_signal(signal.SIGINT)
        try:
            rest, _ = self.proc.communicate(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return rest


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def test_state_and_admin_token_survive_a_restart(data_dir: Path) -> None:
    first = ServerProcess(data_dir)
    try:
        token_file = data_dir / "admin-token"
        assert f"admin token: in {token_file} (created now" in first.output
        token = token_file.read_text().strip()
        with Client(first.url, token) as client:
            client.apply(Service(name=SVC, team="recs", description="kept"))
            for version in ("1", "2", "3"):
                push(client, data_dir.parent / "artifacts", version)
            client.create_revision(SVC, Revision(artifact=Artifact(name="a", version="1")))
            client.create_revision(SVC, Revision(artifact=Artifact(name="a", version="2")))
            client.set_traffic(SVC, {2: 70, 1: 30})
            ci = client.create_token("ci-recs", team="recs").secret
    finally:
        assert "Application shutdown complete" in first.stop()
    second = ServerProcess(data_dir)
    try:
        assert "created now" not in second.output
        assert token_file.read_text().strip() == token
        with Client(second.url, ci) as client:
            service = client.get_service(SVC)
            assert service.description == "kept"
            assert [(r.revision, r.percent) for r in client.get_traffic(SVC).routes] == [
                (f"{SVC}-00002", 70),
                (f"{SVC}-00001", 30),
            ]
            assert [h.action for h in client.history(SVC)][:1] == ["traffic.changed"]
            # the new process reconciles at start-up: the fake backend reports ready again
            revision = client.wait_ready(SVC, 2, timeout=20)
            assert revision.status.ready
            created = client.create_revision(
                SVC, Revision(artifact=Artifact(name="a", version="3"))
            )
            assert created.id == f"{SVC}-00003"
    finally:
        second.stop()


@pytest.mark.parametrize("router", ["python", "haproxy"])
def test_banner_names_the_router_port_services_answer_on(tmp_path: Path, router: str) -> None:
    if router == "haproxy" and shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ServerProcess(
        tmp_path / "data", "--backend", "local", "--router", router, "--router-port", str(port)
    )
    try:
        assert f"services: http://NAME.localhost:{port}/ " in server.output
    finally:
        server.stop()


def test_busy_port_is_a_clear_usage_error(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "one")
    try:
        port = first.url.rsplit(":", 1)[1]
        result = subprocess.run(
            [sys.executable, "-c", "from sos.cli import main; main()", "server",
             "--port", port, "--data-dir", str(tmp_path / "two"), "--backend", "fake"],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert result.returncode == 2
        assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    finally:
        first.stop()
