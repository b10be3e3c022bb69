"""Version ranges are resolved by pip into requirements.lock, which later builds reuse and
`--frozen` builds insist on. Real builds with the real pip and the configured indexes."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sos.artifacts.catalog import LocalArtifactCatalog
from sos.build import BuildFailedError, ProjectError, build
from sos.build.cache import BuildCache

WEB = (
    "from flask import Flask\n\napp = Flask(__name__)\n\n\n"
    "@app.get('/')\ndef index():\n    return {'service': 'ranges'}\n"
)


def ranged_project(root: Path, dependencies: str = '"flask>=3"') -> Path:
    """A project as a new user writes it: a range, no lock file."""
    (root / "svc").mkdir(parents=True)
    (root / "svc" / "__init__.py").write_text("")
    (root / "svc" / "web.py").write_text(WEB)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "ranges"\nversion = "1.0.0"\ndependencies = [{dependencies}]\n'
        '[tool.sos]\napp = "svc.web:app"\n'
    )
    return root


def resolved_in(log: Path) -> bool:
    return "--dry-run" in log.read_text()


def test_unpinned_project_builds_writes_a_lock_records_it_and_serves(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog, serve
) -> None:
    root = ranged_project(tmp_path / "app")
    result = build(root, cache=build_cache, catalog=catalog)

    lock = root / "requirements.lock"
    assert result.warnings == (
        f"resolved 1 unpinned dependency (flask>=3) into {lock}, "
        + re.search(r"\d+ packages? in all", result.warnings[0]).group(0)  # type: ignore[union-attr]
        + "; commit it, so that every build installs these exact versions",
    )
    assert resolved_in(result.log)
    text = lock.read_text()
    assert "# sos-lock: source=pyproject.toml inputs=sha256:" in text
    assert re.search(r"^Flask==3\.\d+\.\d+ \\\n    --hash=sha256:[0-9a-f]{64}$", text, re.M)
    recorded = result.metadata.extra["lock"]
    assert recorded["file"] == "requirements.lock" and recorded["written_by_sos"]
    flask = next(d for d in recorded["dependencies"] if d.startswith("Flask=="))
    assert flask in result.metadata.extra["packages"]  # what was locked is what was packed

    answer = serve([sys.executable, str(result.path)], env={"SHIV_ROOT": str(tmp_path / "shiv")})
    assert (answer.status, answer.json()) == (200, {"service": "ranges"})

    # the next build reuses the lock: no resolution, no warning, the file as it was
    before = lock.read_bytes()
    again = build(root, cache=build_cache, catalog=catalog, use_cache=False, frozen=True)
    assert again.warnings == ()
    assert not resolved_in(again.log)
    assert lock.read_bytes() == before
    assert again.metadata.digest == result.metadata.digest


def _declare_blinker(root: Path) -> None:
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"flask>=3"', '"flask>=3", "blinker"'))


def _lock_for_python_37(root: Path) -> None:
    lock = root / "requirements.lock"
    lock.write_text(re.sub(r"python=\S+", "python=3.7", lock.read_text()))


@pytest.mark.parametrize(
    ("change", "why", "warning"),
    [
        (
            _declare_blinker,
            r"pyproject.toml \[project\] dependencies changed since it was resolved",
            "updated 2 unpinned dependencies (flask>=3, blinker) into",
        ),
        (
            _lock_for_python_37,
            r"it was resolved for Python 3.7 \(linux-\w+\) and this build is for Python 3",
            "updated 1 unpinned dependency (flask>=3) into",
        ),
    ],
    ids=["declarations-changed", "another-python"],
)
def test_a_stale_lock_is_refused_by_frozen_builds_and_resolved_again_by_others(
    tmp_path: Path,
    build_cache: BuildCache,
    catalog: LocalArtifactCatalog,
    change: Callable[[Path], None],
    why: str,
    warning: str,
) -> None:
    root = ranged_project(tmp_path / "app")
    build(root, cache=build_cache, catalog=catalog)
    change(root)
    with pytest.raises(ProjectError, match=f"requirements.lock is out of date: {why}") as info:
        build(root, cache=build_cache, catalog=catalog, frozen=True)
    assert "Run `sos build` without --frozen" in info.value.message

    result = build(root, cache=build_cache, catalog=catalog)
    assert result.warnings[0].startswith(warning)
    assert "python=3.7" not in (root / "requirements.lock").read_text()
    assert build(root, cache=build_cache, catalog=catalog, frozen=True).warnings == ()


def test_frozen_build_without_a_lock_says_what_to_do(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    root = ranged_project(tmp_path / "app", '"flask>=3", "itsdangerous==2.2.0"')
    with pytest.raises(ProjectError) as info:
        build(root, cache=build_cache, catalog=catalog, frozen=True)
    assert info.value.message.endswith(
        "pyproject.toml [project] dependencies allow more than one version (flask>=3) and "
        "there is no requirements.lock; --frozen builds only from a lock that matches. Run "
        "`sos build` without --frozen to resolve pyproject.toml [project] dependencies into "
        "requirements.lock, commit it, and build again"
    )
    assert info.value.field == "project.dependencies"
    assert not (root / "requirements.lock").exists()


def test_a_lock_sos_wrote_is_kept_up_to_date_when_every_dependency_gets_pinned(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    root = ranged_project(tmp_path / "app")
    build(root, cache=build_cache, catalog=catalog)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"flask>=3"', '"flask==3.1.3"'))
    result = build(root, cache=build_cache, catalog=catalog)
    assert result.warnings[0].startswith("updated pyproject.toml [project] dependencies into")
    assert "Flask==3.1.3 \\\n" in (root / "requirements.lock").read_text()


def test_requirements_txt_with_ranges_is_locked_like_pyproject(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    root = tmp_path / "app"
    ranged_project(root)
    (root / "pyproject.toml").unlink()
    (root / "sos.toml").write_text('name = "ranges"\nversion = "1.0.0"\napp = "svc.web:app"\n')
    (root / "requirements.txt").write_text("# what the app needs\nflask\n")
    result = build(root, cache=build_cache, catalog=catalog)
    assert result.warnings[0].startswith("resolved 1 unpinned dependency (flask) into")
    assert "source=requirements.txt" in (root / "requirements.lock").read_text()
    assert any(p.startswith("Flask==") for p in result.metadata.extra["packages"])


def test_a_file_that_does_not_match_the_locked_hash_is_refused(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    root = ranged_project(tmp_path / "app", '"itsdangerous>=2"')
    (root / "svc" / "web.py").write_text(
        "import itsdangerous\n\ndef app(environ, start_response):\n    return []\n"
    )
    build(root, cache=build_cache, catalog=catalog)
    lock = root / "requirements.lock"
    lock.write_text(re.sub(r"--hash=sha256:\w+", "--hash=sha256:" + "0" * 64, lock.read_text()))
    with pytest.raises(BuildFailedError, match=r"itsdangerous 2\.\S+ .* has sha256 [0-9a-f]{64}"):
        build(root, cache=build_cache, catalog=catalog)


def test_pinned_project_builds_as_before_without_a_lock(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    root = project("flask-hello")
    result = build(root, cache=build_cache, catalog=catalog, frozen=True)
    assert result.warnings == ()
    assert not (root / "requirements.lock").exists()
    assert "lock" not in result.metadata.extra
    assert not resolved_in(result.log)
