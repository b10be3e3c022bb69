"""Runtime test helpers: the stdlib test app as a shiv artifact (``build_shiv``), an
instance started by hand (``App``), and the desired state the reconciler would build
(``make_desired``, ``artifact_paths``). Fixtures that use them are in
``tests/sos/runtime/conftest.py``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sos_harness import APPS, digest_of, metadata_for

import sos.build._launcher
from sos.models import ArtifactMetadata, Revision, Service, TrafficRoute, revision_id
from sos.runtime.base import DesiredService


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
