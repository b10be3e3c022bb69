"""Fixtures for the local runtime tests: tiny real artifacts and processes to route to."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipapp
from collections.abc import Iterator
from pathlib import Path

import pytest
from sos_harness import APPS
from sos_runtime import App, StartApp, build_shiv


@pytest.fixture(scope="session")
def hello_pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python zipapp artifact (stdlib only), built the way `python -m zipapp` does."""
    target = tmp_path_factory.mktemp("artifacts") / "hello.pyz"
    zipapp.create_archive(APPS / "hello", target, interpreter="/usr/bin/env python3")
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
