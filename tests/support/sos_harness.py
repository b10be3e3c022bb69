"""A real `sos server` (local backend) in a subprocess, for end-to-end tests and benchmarks;
``publish`` pushes artifacts to its artifact store as `sos push` does."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipapp
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from processes import interrupt

from sos.client import Client
from sos.models import ArtifactMetadata, RevisionSpec
from sos.runtime.local.ingress.haproxy.process import adoptable
from sos.runtime.local.network import Network

APPS = Path(__file__).resolve().parents[1] / "sos" / "runtime" / "apps"


def digest_of(path: Path) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


TOKEN = "e2e-admin-token-0123456789abcdef"
SOS = Path(sys.executable).parent / "sos"


class ServerProcess:
    """`sos server --backend local` in a subprocess; reads where it listens from its output."""

    def __init__(self, data_dir: Path, router_port: int, **env: str) -> None:
        self.output: list[str] = []
        self.data_dir = data_dir
        argv = [
            str(SOS),
            "server",
            "--port",
            "0",
            "--backend",
            "local",
            "--router-port",
            str(router_port),
            "--data-dir",
            str(data_dir),
        ]
        self.process = subprocess.Popen(
            argv,
            env={**os.environ, "SOS_ADMIN_TOKEN": TOKEN, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait(r"listening on (http://\S+)")
        self.router_port = int(self._wait(r"router listening on http://127\.0\.0\.1:(\d+)"))

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def _wait(self, pattern: str, seconds: float = 30) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in list(self.output):
                found = re.search(pattern, line)
                if found:
                    return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in server output:\n{''.join(self.output)}")

    def stop(self) -> None:
        """Ctrl-C, as a user would."""
        interrupt(self.process, 30)


def metadata_for(artifact: Path, name: str, language: str) -> ArtifactMetadata:
    """Artifact metadata for a file, as a build would record it."""
    return ArtifactMetadata(
        name=name,
        version="v1",
        language=language,  # type: ignore[arg-type]
        runtime_version="3.11",
        entry_point=artifact.name,
        digest=digest_of(artifact),
        size=artifact.stat().st_size,
        created_by="test",
        created_at=datetime.now(UTC),
    )


def publish(client: Client, artifact: Path, name: str, language: str) -> None:
    """Push an artifact to the server's artifact store, as ``name`` version v1."""
    client.push_artifact(artifact, metadata=metadata_for(artifact, name, language))


@contextlib.contextmanager
def serving_hello(work: Path, **env: str) -> Iterator[tuple[ServerProcess, Client]]:
    """A `sos server` on ``work / "data"`` (``env`` added to its environment) with the
    stdlib test app pushed as ``hello`` v1, and a client: the server stopped and what it
    started killed after."""
    app = work / "hello.pyz"
    zipapp.create_archive(APPS / "hello", app)
    server = ServerProcess(work / "data", 0, **env)
    try:
        with Client(server.url, TOKEN, timeout=60) as client:
            publish(client, app, "hello", "python")
            yield server, client
    finally:
        server.stop()
        kill_instances(work / "data")


def ready_revision(
    client: Client, service: str, env: dict[str, str], artifact: str = "hello"
) -> str:
    """Create a revision of ``artifact`` v1 with ``env``, one instance, readiness probe
    ``/ready``, and wait until it is ready; its id."""
    spec = RevisionSpec.model_validate(
        {
            "artifact": {"name": artifact, "version": "v1"},
            "env_vars": [{"id": k, "value": v} for k, v in env.items()],
            "health_check": {"readiness_probe": "/ready"},
            "autoscaling": {"min_scale": 1, "max_scale": 1},
        }
    )
    created = client.create_revision(service, spec)
    assert created.id
    client.wait_ready(service, created.id, timeout=60)
    return created.id


def instances_of(revision: str, data_dir: Path) -> list[int]:
    """Live instances of ``revision`` started by the server using ``data_dir``: the process
    group of each (an instance is its sandbox and the app in it, or more processes)."""
    marker = f"SOS_RUNTIME={(data_dir / 'runtime').resolve()}".encode()
    groups: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            wanted = f"SOS_REVISION={revision}".encode()
            if wanted in environ and marker in environ and ") Z" not in stat:
                groups.add(int(stat[stat.rindex(")") + 2 :].split()[2]))
    return sorted(groups)


def kill_instances(data_dir: Path) -> int:
    """Kill every instance a server with ``data_dir`` left running, and the HAProxy it left
    serving (a killed server's data path lives on); how many instances there were."""
    router = adoptable(data_dir / "runtime" / "router")
    if router is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(router[0], signal.SIGKILL)
    # the instances' own networks: their pastas, and the files their namespaces are bound to
    Network(data_dir / "runtime", "private").sweep(set())
    marker = f"SOS_RUNTIME={(data_dir / 'runtime').resolve()}".encode()
    killed = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                try:
                    os.killpg(int(entry), signal.SIGKILL)
                    killed += 1
                except (ProcessLookupError, PermissionError):
                    pass
    return killed


def until(check: Callable[[], bool], seconds: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
