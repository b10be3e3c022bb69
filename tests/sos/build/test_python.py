"""Python artifacts: shiv zipapps that serve their app on $PORT with nothing installed."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sos.artifacts.base import file_digest
from sos.artifacts.catalog import LocalArtifactCatalog
from sos.build import build
from sos.build.cache import BuildCache

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def _run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"SHIV_ROOT": str(tmp_path / "shiv"), **extra}


def test_flask_artifact_serves_on_port_with_no_network(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, tmp_path: Path, serve
) -> None:
    result = build(project("flask-hello"), cache=build_cache, catalog=catalog)
    meta = result.metadata
    assert (meta.name, meta.version, meta.language) == ("flask-hello", "1.0.0", "python")
    assert meta.runtime_version == PY
    assert meta.entry_point == "hello.web:app"
    assert meta.extra["interface"] == "wsgi"
    assert meta.digest == file_digest(result.path)
    assert meta.size == result.path.stat().st_size
    assert result.path.name == "flask-hello-1.0.0.pyz"
    assert result.metadata_file.read_text().count(meta.digest) == 1
    assert any(p.startswith("Flask==3.1.3") for p in meta.extra["packages"])

    answer = serve([sys.executable, str(result.path)], env=_run_env(tmp_path))
    assert answer.status == 200
    assert answer.json()["service"] == "flask-hello"


def test_unchanged_rebuild_reuses_the_cached_artifact(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    root = project("flask-hello")
    first = build(root, cache=build_cache, catalog=catalog)
    again = build(root, cache=build_cache, catalog=catalog)
    assert again.cached
    assert again.metadata.digest == first.metadata.digest
    assert not again.recorded  # same bytes: a no-op in the catalog


def test_rebuild_from_scratch_gives_the_same_bytes(
    project, build_cache: BuildCache, tmp_path: Path
) -> None:
    root = project("flask-hello")
    one = build(
        root, cache=build_cache, catalog=LocalArtifactCatalog(tmp_path / "a"), use_cache=False
    )
    two = build(
        root, cache=build_cache, catalog=LocalArtifactCatalog(tmp_path / "b"), use_cache=False
    )
    assert not two.cached
    assert one.metadata.digest == two.metadata.digest


def test_code_change_rebuilds_and_the_artifact_serves_the_new_code(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, tmp_path: Path, serve
) -> None:
    root = project("flask-hello")
    first = build(root, cache=build_cache, catalog=catalog)
    web = root / "hello" / "web.py"
    web.write_text(web.read_text().replace('service="flask-hello"', 'service="changed"'))
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "1.0.0"', 'version = "1.0.1"'))
    second = build(root, cache=build_cache, catalog=catalog)
    assert not second.cached
    assert second.metadata.extra["dependencies_cached"]
    assert second.metadata.digest != first.metadata.digest
    answer = serve([sys.executable, str(second.path)], env=_run_env(tmp_path))
    assert answer.json()["service"] == "changed"


def test_worker_settings_come_from_the_launch_environment(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, tmp_path: Path, serve
) -> None:
    result = build(project("flask-hello"), cache=build_cache, catalog=catalog)
    env = _run_env(tmp_path, SOS_WORKER_COUNT="2", SOS_THREAD_COUNT="4", SOS_WORKER_CLASS="")
    answer = serve([sys.executable, str(result.path)], env=env, path="/threads")
    assert answer.status == 200
    assert "Using worker: gthread" in answer.output
    assert answer.output.count("Booting worker") == 2


def test_asgi_factory_in_src_layout_gets_uvicorn_workers_and_its_backend_version(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, tmp_path: Path, serve
) -> None:
    result = build(project("fastapi-hello"), cache=build_cache, catalog=catalog)
    meta = result.metadata
    assert meta.version == "0.3.1"  # dynamic: read from the package by hatchling
    assert meta.extra["interface"] == "asgi"
    assert any(p.startswith("uvicorn-worker==") for p in meta.extra["packages"])
    answer = serve([sys.executable, str(result.path)], env=_run_env(tmp_path), path="/hello/ada")
    assert answer.json() == {"greeting": "hello ada"}
    assert "UvicornWorker" in answer.output


def test_asgi_artifact_refuses_a_sync_worker_class_with_a_clear_message(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, tmp_path: Path
) -> None:
    result = build(project("fastapi-hello"), cache=build_cache, catalog=catalog)
    env = {**os.environ, **_run_env(tmp_path), "PORT": "1", "SOS_WORKER_CLASS": "sync"}
    done = subprocess.run(
        [sys.executable, str(result.path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "SOS_WORKER_CLASS='sync' cannot serve this ASGI app" in done.stderr


def test_command_artifact_runs_its_module_with_port_expanded(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, tmp_path: Path, serve
) -> None:
    result = build(project("command-app"), cache=build_cache, catalog=catalog)
    assert result.metadata.extra["interface"] == "command"
    answer = serve([sys.executable, str(result.path)], env=_run_env(tmp_path))
    assert (answer.status, answer.body) == (200, "tick\n")


def test_artifact_holds_its_dependencies_and_launcher(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    result = build(project("flask-hello"), cache=build_cache, catalog=catalog)
    with zipfile.ZipFile(result.path) as archive:
        names = set(archive.namelist())
    assert "site-packages/flask/__init__.py" in names
    assert "site-packages/gunicorn/__init__.py" in names
    assert "site-packages/hello/web.py" in names
    assert "site-packages/_sos_launcher.py" in names
    assert not any("__pycache__" in n for n in names)
    assert result.path.read_bytes().startswith(b"#!/usr/bin/env python3\n")


@pytest.mark.slow
def test_httpbin_from_pypi_builds_and_answers_http_with_no_network(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, tmp_path: Path, serve
) -> None:
    result = build(project("httpbin-service"), cache=build_cache, catalog=catalog)
    assert result.metadata.extra["interface"] == "wsgi"
    assert any(p.startswith("httpbin==0.10.4") for p in result.metadata.extra["packages"])
    answer = serve(
        [sys.executable, str(result.path)], env=_run_env(tmp_path), path="/get?probe=sos"
    )
    assert answer.status == 200
    assert answer.json()["args"] == {"probe": "sos"}


def test_prepare_only_unpacks_once_and_exits_without_serving(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, tmp_path: Path
) -> None:
    result = build(project("flask-hello"), cache=build_cache, catalog=catalog)
    root = tmp_path / "shiv"
    env = {**os.environ, "SHIV_ROOT": str(root), "SOS_PREPARE_ONLY": "1", "PORT": "1"}
    done = subprocess.run(
        [sys.executable, str(result.path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    unpacked = list(root.glob("*/site-packages/flask/__init__.py"))
    assert len(unpacked) == 1


def _local_library(root: Path) -> None:
    lib = root / "mylib"
    (lib / "mylib" / "tests").mkdir(parents=True)
    (lib / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "mylib"\nversion = "0.1.0"\n'
    )
    (lib / "mylib" / "__init__.py").write_text("GREETING = 'hi'\n")
    (lib / "mylib" / "tests" / "__init__.py").write_text("")
    (lib / "mylib" / "tests" / "test_lib.py").write_text("def test_it():\n    pass\n")
    (root / "requirements.txt").write_text("./mylib\n")
    (root / "svc.py").write_text(
        "import mylib\n\ndef app(environ, start_response):\n"
        "    start_response('200 OK', [])\n    return [mylib.GREETING.encode()]\n"
    )


@pytest.mark.parametrize("strip", [True, False])
def test_test_suites_of_dependencies_are_left_out_unless_kept(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog, strip: bool
) -> None:
    root = tmp_path / "app"
    root.mkdir()
    _local_library(root)
    flag = str(strip).lower()
    (root / "sos.toml").write_text(
        f'name = "lib-app"\nversion = "1.0.0"\napp = "svc:app"\nstrip_tests = {flag}\n'
    )
    result = build(root, cache=build_cache, catalog=catalog)
    with zipfile.ZipFile(result.path) as archive:
        names = set(archive.namelist())
    assert "site-packages/mylib/__init__.py" in names
    assert "site-packages/svc.py" in names
    assert ("site-packages/mylib/tests/test_lib.py" in names) is not strip


def test_a_packed_model_is_named_in_the_artifact_metadata(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    """A revision says which model it serves: a ``model.json`` with a version and a digest
    (as flight.models writes it) packed with the code is recorded, by directory."""
    import json

    root = project("command-app")
    card = root / "tick" / "models" / "als" / "model.json"
    card.parent.mkdir(parents=True)
    card.write_text(
        json.dumps(
            {"name": "als", "version": "20261204T010000Z-a8e9bdfe", "digest": "a8e9" * 16,
             "library": "implicit 0.7.3", "params": {"factors": 64}}
        )
    )  # fmt: skip
    (root / "tick" / "models" / "notes.json").write_text("{}")  # not a model card
    result = build(root, cache=build_cache, catalog=catalog)
    assert result.metadata.extra["models"] == {
        "tick/models/als": {
            "name": "als",
            "version": "20261204T010000Z-a8e9bdfe",
            "digest": "a8e9" * 16,
            "library": "implicit 0.7.3",
        }
    }
