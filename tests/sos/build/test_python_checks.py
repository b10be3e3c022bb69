"""Integrity checks of Python projects: each mistake gets its own clear error, before any
work (or, for what only an import can tell, before anything is recorded)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sos.artifacts.catalog import LocalArtifactCatalog
from sos.build import BuildResult, ProjectError, build, inspect_project
from sos.build.cache import BuildCache
from sos.errors import ConflictError


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


APP = {"svc/__init__.py": "", "svc/web.py": "def app(environ, start_response):\n    return []\n"}


def pyproject(body: str) -> dict[str, str]:
    return {"pyproject.toml": body, **APP}


def test_no_entry_point_says_how_to_declare_the_app(tmp_path: Path) -> None:
    write(tmp_path, pyproject('[project]\nname = "a"\nversion = "1.0"\ndependencies = []\n'))
    with pytest.raises(ProjectError, match=r"(?s)no entry point.*\[tool.sos\]") as info:
        inspect_project(tmp_path)
    assert info.value.field == "tool.sos.app"
    assert info.value.file and info.value.file.endswith("pyproject.toml")


def test_app_and_command_together_are_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        pyproject(
            '[project]\nname = "a"\nversion = "1"\ndependencies = []\n'
            '[tool.sos]\napp = "svc.web:app"\ncommand = "python -m svc"\n'
        ),
    )
    with pytest.raises(ProjectError, match="both app and command"):
        inspect_project(tmp_path)


def test_malformed_app_reference_shows_the_expected_shape(tmp_path: Path) -> None:
    write(
        tmp_path,
        pyproject(
            '[project]\nname = "a"\nversion = "1"\ndependencies = []\n'
            '[tool.sos]\napp = "svc/web.py"\n'
        ),
    )
    with pytest.raises(ProjectError, match=r"package.module:app"):
        inspect_project(tmp_path)


def test_missing_version_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        pyproject('[project]\nname = "a"\ndependencies = []\n[tool.sos]\napp = "svc.web:app"\n'),
    )
    with pytest.raises(ProjectError, match="version is missing") as info:
        inspect_project(tmp_path)
    assert info.value.field == "project.version"


@pytest.mark.parametrize(
    ("dependency", "why"),
    [
        ("flask>=3", "allows more than one version"),
        ("flask", "has no version at all"),
        ("flask==3.*", "allows more than one version"),
        ("flask~=3.1", "allows more than one version"),
        ("pkg @ https://example.invalid/pkg.tar.gz", "URL without a sha256"),
    ],
)
def test_unpinned_line_of_a_hand_written_lock_is_refused_with_how_to_pin(
    tmp_path: Path, dependency: str, why: str
) -> None:
    write(
        tmp_path,
        pyproject(
            '[project]\nname = "a"\nversion = "1"\ndependencies = ["flask>=3"]\n'
            '[tool.sos]\napp = "svc.web:app"\n'
        ),
    )
    (tmp_path / "requirements.lock").write_text(f"{dependency}\n")
    with pytest.raises(ProjectError, match=why) as info:
        inspect_project(tmp_path)
    assert "delete the file: `sos build` then resolves" in info.value.message
    assert info.value.details["requirement"] == dependency


@pytest.mark.parametrize(
    "dependency", ["flask>=3", "flask", "flask~=3.1", "pkg @ https://x.invalid/p.tgz"]
)
def test_unpinned_declarations_are_left_to_the_build_to_lock(
    tmp_path: Path, dependency: str
) -> None:
    write(
        tmp_path,
        pyproject(
            '[project]\nname = "a"\nversion = "1"\n'
            f'dependencies = ["{dependency}", "rich==13.9.4"]\n'
            '[tool.sos]\napp = "svc.web:app"\n'
        ),
    )
    found = inspect_project(tmp_path).details["locking"]
    assert found.needs_lock == "missing"
    assert found.declared.unpinned == (dependency,)
    assert found.dependencies == []


def test_missing_dependency_declarations_are_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        pyproject('[project]\nname = "a"\nversion = "1"\n[tool.sos]\napp = "svc.web:app"\n'),
    )
    with pytest.raises(ProjectError, match=r"no dependency declarations.*dependencies = \[\]"):
        inspect_project(tmp_path)


def test_lock_file_pins_ranges_declared_in_pyproject(tmp_path: Path) -> None:
    write(
        tmp_path,
        pyproject(
            '[project]\nname = "a"\nversion = "1"\ndependencies = ["flask>=3"]\n'
            '[tool.sos]\napp = "svc.web:app"\n'
        ),
    )
    (tmp_path / "requirements.lock").write_text(
        "# pinned\nflask==3.1.3 \\\n    --hash=sha256:" + "0" * 64 + "\nwerkzeug==3.1.9\n"
    )
    project = inspect_project(tmp_path)
    deps = project.details["dependencies"]
    assert [d.line for d in deps] == ["flask==3.1.3", "werkzeug==3.1.9"]
    assert deps[0].hashes == ("sha256:" + "0" * 64,)
    assert project.details["lock_file"].name == "requirements.lock"


def test_lock_file_with_an_unpinned_line_names_the_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "requirements.lock": "flask==3.1.3\nrequests\n",
            "sos.toml": 'name="a"\nversion="1"\napp="svc.web:app"\n',
            **APP,
        },
    )
    with pytest.raises(ProjectError, match="'requests' is not pinned") as info:
        inspect_project(tmp_path)
    assert info.value.field == "line 2"


def test_lock_file_missing_a_declared_dependency_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        pyproject(
            '[project]\nname = "a"\nversion = "1"\ndependencies = ["flask>=3", "redis>=5"]\n'
            '[tool.sos]\napp = "svc.web:app"\n'
        ),
    )
    (tmp_path / "requirements.lock").write_text("flask==3.1.3\n")
    with pytest.raises(ProjectError, match="pins no 'redis'"):
        inspect_project(tmp_path)


def test_local_path_dependency_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "requirements.txt": "../nowhere\n",
            "sos.toml": 'name="a"\nversion="1"\napp="svc.web:app"\n',
            **APP,
        },
    )
    with pytest.raises(ProjectError, match="does not exist"):
        inspect_project(tmp_path)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, pyproject("[project\nname = 'a'\n"))
    with pytest.raises(ProjectError, match=r"pyproject.toml: is not valid TOML"):
        inspect_project(tmp_path)


def test_unknown_sos_setting_lists_the_known_ones(tmp_path: Path) -> None:
    write(
        tmp_path,
        pyproject('[project]\nname="a"\nversion="1"\ndependencies=[]\n[tool.sos]\nap = "x:y"\n'),
    )
    with pytest.raises(ProjectError, match=r"unknown setting 'ap'.*known: .*app"):
        inspect_project(tmp_path)


def test_settings_in_two_places_are_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        pyproject(
            '[project]\nname="a"\nversion="1"\ndependencies=[]\n[tool.sos]\napp = "svc.web:app"\n'
        ),
    )
    (tmp_path / "sos.toml").write_text('app = "svc.web:app"\n')
    with pytest.raises(ProjectError, match="keep them in one place"):
        inspect_project(tmp_path)


def test_invalid_artifact_version_is_refused_before_building(tmp_path: Path) -> None:
    write(
        tmp_path,
        pyproject(
            '[project]\nname="a"\nversion="1/../2"\ndependencies=[]\n'
            '[tool.sos]\napp = "svc.web:app"\n'
        ),
    )
    with pytest.raises(ProjectError, match="may not contain"):
        inspect_project(tmp_path)


def test_undeclared_import_is_found_by_importing_the_app(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname="a"\nversion="1"\ndependencies=[]\n'
            '[tool.sos]\napp = "svc.web:app"\n',
            "svc/__init__.py": "",
            "svc/web.py": "import flask\napp = flask.Flask(__name__)\n",
        },
    )
    with pytest.raises(ProjectError, match="imports 'flask', which no declared dependency"):
        build(tmp_path, cache=build_cache, catalog=catalog)
    assert catalog.list() == []
    assert not (tmp_path / "dist").exists()


def test_app_that_is_not_callable_is_refused(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname="a"\nversion="1"\ndependencies=[]\n'
            '[tool.sos]\napp = "svc.web:app"\n',
            "svc/__init__.py": "",
            "svc/web.py": "app = 42\n",
        },
    )
    with pytest.raises(ProjectError, match="not callable"):
        build(tmp_path, cache=build_cache, catalog=catalog)


def test_command_naming_an_unknown_module_is_refused(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname="a"\nversion="1"\ndependencies=[]\n'
            '[tool.sos]\ncommand = "python -m nothere --port $PORT"\n',
            "svc/__init__.py": "",
        },
    )
    with pytest.raises(ProjectError, match="runs the module 'nothere'"):
        build(tmp_path, cache=build_cache, catalog=catalog)


def _stdlib_app(root: Path, version: str, greeting: str) -> Path:
    return write(
        root,
        {
            "pyproject.toml": f'[project]\nname="wsgi-app"\nversion="{version}"\ndependencies=[]\n'
            '[tool.sos]\napp = "svc.web:app"\n',
            "svc/__init__.py": "",
            "svc/web.py": "def app(environ, start_response):\n"
            "    start_response('200 OK', [])\n"
            f"    return [b'{greeting}']\n",
        },
    )


def _pushed(catalog: LocalArtifactCatalog, built: BuildResult) -> None:
    """What `sos push` records after the server took the artifact."""
    server_copy = built.metadata.model_copy(
        update={"pushed_by": "ci", "pushed_at": datetime.now(UTC)}
    )
    catalog.mark_pushed(server_copy, "http://sos.example:8080")


def test_dirty_version_colliding_with_a_pushed_artifact_is_refused(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    root = _stdlib_app(tmp_path / "app", "1.0.0+dirty", "one")
    first = build(root, cache=build_cache, catalog=catalog)
    _pushed(catalog, first)
    _stdlib_app(root, "1.0.0+dirty", "two")
    with pytest.raises(
        ConflictError, match=r"(?s)1.0.0\+dirty.*local \(dirty\) version.*commit.*sos.example"
    ) as info:
        build(root, cache=build_cache, catalog=catalog)
    assert info.value.details["existing"] == first.metadata.digest
    assert catalog.require("wsgi-app", "1.0.0+dirty").digest == first.metadata.digest


def test_rebuilding_an_unpushed_version_replaces_it_and_says_so(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    root = _stdlib_app(tmp_path / "app", "2.0.0", "one")
    first = build(root, cache=build_cache, catalog=catalog)
    _stdlib_app(root, "2.0.0", "two")
    second = build(root, cache=build_cache, catalog=catalog)
    assert second.replaced is not None and second.replaced.digest == first.metadata.digest
    assert catalog.require("wsgi-app", "2.0.0").digest == second.metadata.digest
    assert "replaced the earlier local build" in second.log.read_text()
    _pushed(catalog, second)
    _stdlib_app(root, "2.0.0", "three")
    with pytest.raises(ConflictError, match=r"bump the version.*it was pushed to"):
        build(root, cache=build_cache, catalog=catalog)


def test_requires_python_that_the_runtime_does_not_meet_is_refused(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    write(
        tmp_path,
        pyproject(
            '[project]\nname="a"\nversion="1"\nrequires-python=">=3.99"\ndependencies=[]\n'
            '[tool.sos]\napp = "svc.web:app"\n'
        ),
    )
    with pytest.raises(ProjectError, match=r"requires Python >=3.99.*sos build --python"):
        build(tmp_path, cache=build_cache, catalog=catalog)


def test_what_is_not_a_file_of_the_project_never_hangs_or_crashes_the_build(
    tmp_path: Path,
) -> None:
    """A server's data dir left inside a project holds FIFOs and namespace mounts: a FIFO
    is no content (opening it would wait for a writer for ever), and a file that cannot be
    read is named with what to do, not a traceback."""
    from sos.build.cache import fingerprint

    root = tmp_path / "proj"
    root.mkdir()
    (root / "a.txt").write_text("a\n")
    os.mkfifo(root / "pipe")
    before = fingerprint(root)
    (root / "pipe").unlink()
    assert fingerprint(root) == before  # the FIFO counted for nothing, and did not block
    (root / "mem").symlink_to("/proc/self/mem")  # exists, and reading it fails
    with pytest.raises(ProjectError, match=r"cannot read mem .*list them in \.gitignore"):
        fingerprint(root)
