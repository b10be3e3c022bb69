"""Fixtures for the local runtime tests: tiny real artifacts and processes to route to."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipapp
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.sos.runtime.harness import APPS, digest_of, metadata_for

import sos.build._launcher
from sos.models import ArtifactMetadata, Revision, Service, TrafficRoute, revision_id
from sos.runtime.base import DesiredService


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def hello_pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python zipapp artifact (stdlib only), built the way `python -m zipapp` does."""
    target = tmp_path_factory.mktemp("artifacts") / "hello.pyz"
    zipapp.create_archive(APPS / "hello", target, interpreter="/usr/bin/env python3")
    return target


def build_shiv(target: Path, launcher: str | None = None) -> Path:
    """A shiv zipapp like `sos build` makes (the SOS launcher as its entry point) that runs
    the stdlib test app as its command; ``launcher`` replaces the launcher's source."""
    site = target.with_suffix(".site")
    shutil.copytree(APPS / "hello", site / "hello_app")
    source = Path(sos.build._launcher.__file__).read_text()
    (site / "_sos_launcher.py").write_text(launcher or source)
    config = {"interface": "command", "command": "python -m hello_app", "name": "hello"}
    (site / "_sos_launcher.json").write_text(json.dumps(config))
    shiv = Path(sys.executable).parent / "shiv"
    argv = [str(shiv), "--site-packages", str(site), "-e", "_sos_launcher:main"]
    subprocess.run([*argv, "-o", str(target), "--reproducible"], check=True, timeout=120)
    return target


@pytest.fixture(scope="session")
def hello_shiv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test app as a shiv zipapp with the SOS launcher: prepared before it starts."""
    return build_shiv(tmp_path_factory.mktemp("artifacts") / "hello-shiv.pyz")


@pytest.fixture(scope="session")
def hello_go(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static Go binary artifact, to show the runtime is not only for Python."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed (scripts/setup installs golang-go)")
    work = tmp_path_factory.mktemp("go")
    shutil.copy(APPS / "hello.go", work / "main.go")
    (work / "go.mod").write_text("module hello\n\ngo 1.19\n")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOPROXY": "off"}
    env.setdefault("GOCACHE", str(tmp_path_factory.getbasetemp() / "gocache"))
    subprocess.run([go, "build", "-o", "hello"], cwd=work, env=env, check=True, timeout=240)
    return work / "hello"


class App:
    """An instance started by hand (for router tests that do not need the supervisor)."""

    def __init__(self, artifact: Path, revision: str, **env: str) -> None:
        self.port = free_port()
        argv = [sys.executable, str(artifact)] if artifact.suffix == ".pyz" else [str(artifact)]
        self.process = subprocess.Popen(
            argv,
            env={
                **os.environ,
                "PORT": str(self.port),
                "HOST": "127.0.0.1",
                "SOS_REVISION": revision,
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/ready", timeout=1)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"test app {revision} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


StartApp = Callable[..., App]


@pytest.fixture
def start_app(hello_pyz: Path) -> Iterator[StartApp]:
    """Start test apps as real processes; all are killed at the end of the test."""
    apps: list[App] = []

    def start(revision: str, artifact: Path | None = None, **env: str) -> App:
        app = App(artifact or hello_pyz, revision, **env)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.stop()


# --------------------------------------------------------------------------- desired state


def make_desired(
    service: str,
    revisions: list[tuple[int, Path, dict[str, object]]],
    traffic: dict[int, int] | None,
    tags: dict[int, str] | None = None,
) -> DesiredService:
    """A DesiredService as the reconciler builds it: revisions with resolved artifacts."""
    built: list[Revision] = []
    artifacts: dict[str, ArtifactMetadata] = {}
    for number, artifact, spec in revisions:
        language = "go" if artifact.suffix == "" else "python"
        meta = metadata_for(artifact, artifact.stem, language)
        digest = meta.digest
        artifacts[digest] = meta
        data = {"artifact": {"name": artifact.stem, "version": "v1", "digest": digest}, **spec}
        revision = Revision.model_validate(
            {**data, "id": revision_id(service, number), "service": service, "number": number}
        )
        built.append(revision)
    route = None
    if traffic is not None:
        routes = [
            {"revision": revision_id(service, n), "percent": p, "tag": (tags or {}).get(n)}
            for n, p in traffic.items()
        ]
        route = TrafficRoute.model_validate({"routes": routes})
    return DesiredService(Service(name=service, team="t"), tuple(built), route, artifacts)


def artifact_paths(*paths: Path) -> Callable[[str], Path]:
    by_digest = {digest_of(p): p for p in paths}

    def find(digest: str) -> Path:
        return by_digest[digest]

    return find
