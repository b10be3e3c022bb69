"""``sos build --remote``, ``sos builds`` and provenance in ``sos artifacts``, and the
lock file a remote build resolved, as a user runs them against a server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sos_builds import build_server, make_builder, unpinned_project
from sos_server import RunningServer

from sos.server.build_sandbox import BuilderEnvironment

PROJECTS = Path(__file__).parents[1] / "build" / "projects"
SOS = [str(Path(sys.executable).parent / "sos")]


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> BuilderEnvironment:
    return make_builder(tmp_path_factory.mktemp("builder"))


Sos = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def sos(
    sos_server: Callable[..., RunningServer], builder: BuilderEnvironment, tmp_path: Path
) -> Sos:
    """``sos(*args, **env)``: the CLI against a server building on ``builder``."""
    server = build_server(sos_server, builder)
    env = {
        **os.environ,
        "SOS_URL": server.url,
        "SOS_TOKEN": server.admin_token,
        "SOS_HOME": str(tmp_path / "home"),
        "SOS_CACHE_DIR": str(tmp_path / "cache"),
        "COLUMNS": "200",
    }

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SOS, *args], env={**env, **extra}, capture_output=True, text=True, timeout=300
        )

    return run


def test_build_remote_streams_its_steps_and_builds_lists_it(
    sos: Sos, builder: BuilderEnvironment, tmp_path: Path
) -> None:
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


def test_build_remote_writes_the_lock_it_resolved_beside_the_project(
    sos: Sos, tmp_path: Path
) -> None:
    project = unpinned_project(tmp_path, "ranged")
    lock = project / "requirements.lock"
    built = sos("build", "--remote", str(project))
    assert built.returncode == 0, built.stderr
    said = " ".join(built.stderr.split())  # as the terminal wrapped it
    assert said.count("warning:") == 1
    assert (
        f"warning: resolved 1 unpinned dependency (six) into {lock}, 1 package in all; "
        "commit it, so that every build installs these exact versions"
    ) in said
    assert lock.read_text().count("six==") == 1
    build_id = json.loads(sos("builds", "--json").stdout)[0]["id"]
    assert sos("builds", build_id, "--lock").stdout == lock.read_text()
    shown = sos("builds", build_id).stdout
    assert f"lock     requirements.lock (resolved by this build; sos builds {build_id} --lock)" in (
        shown
    )
    # the next remote build installs what it pins, and has nothing to say
    again = sos("build", "--remote", str(project), "--json")
    assert again.returncode == 0, again.stderr
    assert "warning:" not in again.stderr
    data = json.loads(again.stdout)
    assert data["lock"]["written"] is False and data["warnings"] == []
