"""Fixtures for build tests: a private build cache and catalog, copies of the example
projects, and a way to start an artifact and ask it for a page, cut off from the network
when the machine allows it (a new network namespace with only loopback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sos.artifacts.catalog import LocalArtifactCatalog
from sos.build.cache import BuildCache

PROJECTS = Path(__file__).parent / "projects"
PROBE = Path(__file__).parent / "_probe.py"


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> BuildCache:
    """One cache for the whole run, as a developer's machine has: later builds reuse it."""
    return BuildCache(tmp_path_factory.mktemp("sos-cache"))


@pytest.fixture
def catalog(tmp_path: Path) -> LocalArtifactCatalog:
    return LocalArtifactCatalog(tmp_path / "sos-home" / "artifacts")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(PROJECTS / name, target)
        return target

    yield copy


def _netns_works() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, check=False
    )
    return probe.returncode == 0


NO_NETWORK = _netns_works()


@dataclass
class Answer:
    status: int
    body: str
    output: str
    isolated: bool

    def json(self) -> dict[str, object]:
        return json.loads(self.body)  # type: ignore[no-any-return]


def serve_and_get(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    path: str = "/",
    timeout: float = 90,
    cwd: Path | None = None,
) -> Answer:
    """Start ``argv`` with PORT/HOST set, GET ``path`` once it answers, stop it.

    Runs in a network namespace with only loopback when possible, so a start that
    needed the network (to install something) fails here instead of passing quietly.
    """
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        **(env or {}),
    }
    probe = [sys.executable, str(PROBE), "--path", path, "--timeout", str(timeout), "--", *argv]
    if NO_NETWORK:
        command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *probe]
    else:
        command = probe
    done = subprocess.run(
        command,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        cwd=cwd,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(f"the artifact did not answer:\n{done.stdout}\n{done.stderr}")
    result = json.loads(lines[-1])
    return Answer(result["status"], result["body"], result["output"], NO_NETWORK)


@pytest.fixture
def serve() -> object:
    """``serve(argv, env=..., path=...) -> Answer``: start an artifact and GET a page."""
    return serve_and_get
