"""``sos build``, ``sos artifacts --local`` and ``sos push`` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECTS = Path(__file__).parents[1] / "build" / "projects"
SOS = [str(Path(sys.executable).parent / "sos")]


@pytest.fixture
def env(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SOS_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "cli-build-cache"),
        "SOS_HOME": str(tmp_path / "home"),
        "SOS_URL": "http://127.0.0.1:9",  # no server: push must fail cleanly
    }


def sos(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SOS, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_build_json_prints_one_object_with_the_artifact_path(
    tmp_path: Path, env: dict[str, str]
) -> None:
    root = shutil.copytree(PROJECTS / "command-app", tmp_path / "command-app")
    done = sos("build", str(root), "--json", env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["name"] == "tick-server" and data["version"] == "2.0.0"
    assert Path(data["path"]).is_file()
    assert (
        data["digest"].startswith("sha256:") and data["size"] == Path(data["path"]).stat().st_size
    )
    assert Path(data["log"]).read_text().count("== Package (shiv)") == 1
    listed = sos("artifacts", "--local", "--json", env=env)
    assert [a["digest"] for a in json.loads(listed.stdout)] == [data["digest"]]


def ranged_project(root: Path, dependency: str) -> None:
    """A project as a new user writes it: one version range, no lock."""
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "x"\nversion = "1.0.0"\ndependencies = ["{dependency}"]\n'
        '[tool.sos]\ncommand = "python -m http.server $PORT"\n'
    )


def test_build_of_a_broken_project_exits_1_with_the_reason_and_no_traceback(
    tmp_path: Path, env: dict[str, str]
) -> None:
    ranged_project(tmp_path, "flask>=3")
    done = sos("build", "--json", "--frozen", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "error:" in done.stderr and "(flask>=3) and there is no requirements.lock" in done.stderr
    assert "Traceback" not in done.stderr


def test_build_of_version_ranges_writes_the_lock_and_says_so_once(
    tmp_path: Path, env: dict[str, str]
) -> None:
    ranged_project(tmp_path, "itsdangerous>=2")
    done = sos("build", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lock = tmp_path / "requirements.lock"
    assert "warning: resolved 1 unpinned dependency (itsdangerous>=2) into" in done.stderr
    assert "commit it" in done.stderr and lock.is_file()
    again = sos("build", "--frozen", "--no-cache", "--json", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "warning" not in again.stderr
    data = json.loads(again.stdout)
    assert data["warnings"] == []
    assert data["extra"]["lock"]["file"] == "requirements.lock"


def test_build_help_tells_of_frozen(env: dict[str, str]) -> None:
    done = sos("build", "--help", env={**env, "COLUMNS": "200"})
    assert "--frozen" in done.stdout and "refuse a missing or stale one" in done.stdout


def test_build_without_an_entry_point_shows_the_toml_to_add(
    tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n')
    done = sos("build", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "tell SOS what to serve, in pyproject.toml:" in done.stderr
    assert "    [tool.sos]\n" in done.stderr  # printed as written, not eaten as markup


def test_build_of_a_missing_directory_says_so(tmp_path: Path, env: dict[str, str]) -> None:
    done = sos("build", str(tmp_path / "nope"), env=env)
    assert done.returncode == 1
    assert "is not a directory" in done.stderr


def test_push_without_metadata_explains_what_to_push(tmp_path: Path, env: dict[str, str]) -> None:
    stray = tmp_path / "app.pyz"
    stray.write_bytes(b"x")
    done = sos("push", str(stray), env=env)
    assert done.returncode == 1
    assert "no metadata beside it" in done.stderr


def test_build_push_to_an_unreachable_server_keeps_the_artifact_and_says_so(
    tmp_path: Path, env: dict[str, str]
) -> None:
    root = shutil.copytree(PROJECTS / "command-app", tmp_path / "command-app")
    done = sos("build", str(root), "--push", env=env)
    assert done.returncode == 1
    assert "built tick-server-2.0.0.pyz, but the push failed: cannot reach" in done.stderr
    assert (root / "dist" / "tick-server-2.0.0.pyz").is_file()
