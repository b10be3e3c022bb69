"""``sos build --remote``, ``sos builds`` and provenance in ``sos artifacts``, as a user
runs them against a server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sos_builds import build_server, make_builder
from sos_server import RunningServer

from sos.server.build_sandbox import BuilderEnvironment

PROJECTS = Path(__file__).parents[1] / "build" / "projects"
SOS = [str(Path(sys.executable).parent / "sos")]


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> BuilderEnvironment:
    return make_builder(tmp_path_factory.mktemp("builder"))


def test_build_remote_streams_its_steps_and_builds_lists_it(
    sos_server: Callable[..., RunningServer], builder: BuilderEnvironment, tmp_path: Path
) -> None:
    server = build_server(sos_server, builder)
    env = {
        **os.environ,
        "SOS_URL": server.url,
        "SOS_TOKEN": server.admin_token,
        "SOS_HOME": str(tmp_path / "home"),
        "SOS_CACHE_DIR": str(tmp_path / "cache"),
        "COLUMNS": "200",
    }

    def sos(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SOS, *args], env={**env, **extra}, capture_output=True, text=True, timeout=300
        )

    project = str(shutil.copytree(PROJECTS / "command-app", tmp_path / "command-app"))
    built = sos("build", "--remote", project)
    assert built.returncode == 0, built.stderr
    assert "built on the server" in built.stdout and "tick-server 2.0.0" in built.stdout
    for step in ("Check the project", "Pack and upload the source", "Inspect the project"):
        assert f"✓ {step}" in built.stderr
    # SOS_BUILD_REMOTE=1 makes it the default: the same source, reused at once
    again = sos("build", project, "--json", SOS_BUILD_REMOTE="1")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["state"] == "succeeded" and data["steps"][0]["name"].startswith("Reuse")
    listed = json.loads(sos("builds", "--json").stdout)
    assert [b["id"] for b in listed] == [data["id"], listed[1]["id"]]
    log = sos("builds", listed[1]["id"], "--log")
    assert "== Package (shiv)" in log.stdout
    table = sos("artifacts")
    assert "PROVENANCE" in table.stdout and f"remote {builder.isolation}" in table.stdout
    # --local builds here even with SOS_BUILD_REMOTE=1
    local = sos("build", project, "--local", "--json", SOS_BUILD_REMOTE="1")
    assert local.returncode == 0, local.stderr
    prov = json.loads(local.stdout)["extra"]["provenance"]
    assert prov["builder"]["kind"] == "local" and prov["source_fingerprint"].startswith("sha256:")
