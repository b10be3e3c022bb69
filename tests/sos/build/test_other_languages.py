"""Node (ncc bundle), Go (static binary) and JVM (jar) artifacts, built with the real
toolchains and started with only their runtime. A toolchain that is really absent skips
its tests with the reason shown; scripts/setup installs them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sos.artifacts.catalog import LocalArtifactCatalog
from sos.build import BuildFailedError, ProjectError, ToolchainMissingError, build, inspect_project
from sos.build.cache import BuildCache
from sos.build.jvm import main_class_of

needs_node = pytest.mark.skipif(
    not (shutil.which("node") and shutil.which("npm")), reason="node/npm not installed"
)
needs_go = pytest.mark.skipif(not shutil.which("go"), reason="go not installed")
needs_jdk = pytest.mark.skipif(
    not (shutil.which("javac") and shutil.which("jar") and shutil.which("java")),
    reason="JDK (javac, jar) not installed",
)


# --------------------------------------------------------------------------- node


@needs_node
def test_node_bundle_is_one_file_that_serves_on_port(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, serve
) -> None:
    result = build(project("node-hello"), cache=build_cache, catalog=catalog)
    meta = result.metadata
    assert (meta.name, meta.version, meta.language) == ("node-hello", "1.2.0", "node")
    assert meta.entry_point == "src/server.js"  # from scripts.start
    assert result.path.name == "node-hello-1.2.0.js"
    node_major = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
    assert meta.runtime_version == node_major.strip().lstrip("v").split(".")[0]
    answer = serve(["node", str(result.path)], path="/ping")
    assert answer.json() == {"service": "node-hello", "greeting": "hello from /ping"}


@needs_node
@pytest.mark.slow
def test_http_server_from_npm_bundles_and_serves_files_with_no_network(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, serve, tmp_path: Path
) -> None:
    result = build(project("node-static"), cache=build_cache, catalog=catalog)
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello.txt").write_text("static hello\n")
    lone = tmp_path / "lone" / result.path.name  # no node_modules anywhere near it
    lone.parent.mkdir()
    shutil.copy2(result.path, lone)
    answer = serve(["node", str(lone)], path="/hello.txt", env={"STATIC_ROOT": str(site)})
    assert (answer.status, answer.body) == (200, "static hello\n")


@needs_node
def test_es_module_project_bundles_into_one_file_node_runs(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, serve
) -> None:
    result = build(project("node-esm"), cache=build_cache, catalog=catalog)
    assert result.path.name == "esm-hello-1.0.0.js"
    answer = serve(["node", str(result.path)])
    assert (answer.status, answer.body) == (200, "hello esm\n")


@needs_node
def test_node_missing_dependency_is_named(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    (tmp_path / "package.json").write_text(
        json.dumps({"name": "x", "version": "1.0.0", "main": "index.js"})
    )
    (tmp_path / "index.js").write_text("require('left-pad');\n")
    with pytest.raises(ProjectError, match=r"requires 'left-pad'.*npm install --save left-pad"):
        build(tmp_path, cache=build_cache, catalog=catalog)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"name": "x", "main": "index.js"}, "version is missing"),
        ({"name": "x", "version": "1.0.0"}, "no entry point"),
        ({"name": "x", "version": "1.0.0", "main": "nope.js"}, "'nope.js' does not exist"),
    ],
)
def test_node_project_mistakes_are_refused(tmp_path: Path, manifest: dict, message: str) -> None:
    (tmp_path / "package.json").write_text(json.dumps(manifest))
    (tmp_path / "index.js").write_text("")
    with pytest.raises(ProjectError, match=message):
        inspect_project(tmp_path)


def _node_project(
    root: Path, dependencies: dict[str, str], code: str, name: str = "padded"
) -> dict[str, object]:
    """package.json (returned) and index.js, its main file."""
    manifest = {"name": name, "version": "1.0.0", "main": "index.js", "dependencies": dependencies}
    (root / "package.json").write_text(json.dumps(manifest))
    (root / "index.js").write_text(code)
    return manifest


@needs_node
def test_node_project_without_a_lock_gets_one_beside_package_json(
    tmp_path: Path, build_cache: BuildCache, catalog: LocalArtifactCatalog, serve
) -> None:
    manifest = _node_project(
        tmp_path,
        {"left-pad": "^1.2.0"},
        "const pad = require('left-pad');\n"
        "require('http').createServer((q, r) => r.end(pad('x', 3, '-')))"
        ".listen(process.env.PORT, process.env.HOST);\n",
    )
    lock = tmp_path / "package-lock.json"
    with pytest.raises(ProjectError, match=r"no package-lock.json; --frozen builds only from"):
        build(tmp_path, cache=build_cache, catalog=catalog, frozen=True)

    result = build(tmp_path, cache=build_cache, catalog=catalog)
    assert result.warnings == (
        f"resolved package.json's dependencies (left-pad) into {lock}, 1 package in all; "
        "commit it, so that every build installs these exact versions",
    )
    locked = json.loads(lock.read_text())["packages"]["node_modules/left-pad"]["version"]
    assert result.metadata.extra["lock"]["dependencies"] == [f"left-pad@{locked}"]
    assert serve(["node", str(result.path)]).body == "--x"
    again = build(tmp_path, cache=build_cache, catalog=catalog, frozen=True, use_cache=False)
    assert again.warnings == ()

    manifest["dependencies"] = {"left-pad": "1.2.0"}
    (tmp_path / "package.json").write_text(json.dumps(manifest))
    with pytest.raises(ProjectError, match=r"package-lock.json is out of date: .*\(left-pad\)"):
        build(tmp_path, cache=build_cache, catalog=catalog, frozen=True)
    assert build(tmp_path, cache=build_cache, catalog=catalog).warnings[0].startswith("updated")
    assert '"version": "1.2.0"' in lock.read_text()


def test_node_lock_file_makes_ranges_acceptable(tmp_path: Path) -> None:
    _node_project(tmp_path, {"a": "^1"}, "", name="@team/x")
    (tmp_path / "package-lock.json").write_text("{}")
    project = inspect_project(tmp_path)
    assert project.name == "team-x"  # a scoped npm name becomes a valid artifact name


# --------------------------------------------------------------------------- go


@needs_go
def test_go_builds_a_static_binary_that_serves_on_port(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, serve
) -> None:
    result = build(project("go-hello"), cache=build_cache, catalog=catalog)
    meta = result.metadata
    assert (meta.name, meta.version, meta.language) == ("go-hello", "0.1.0", "go")
    assert meta.extra["static"] is True
    assert result.path.stat().st_mode & 0o111
    with result.path.open("rb") as binary:
        assert binary.read(4) == b"\x7fELF"
    if shutil.which("ldd"):  # a static binary has no dynamic section
        ldd = subprocess.run(["ldd", str(result.path)], capture_output=True, text=True)
        assert "not a dynamic executable" in ldd.stdout + ldd.stderr
    answer = serve([str(result.path)], path="/x")
    assert answer.json() == {"service": "go-hello", "path": "/x"}


def test_go_without_a_version_says_where_to_put_it(project) -> None:
    root = project("go-hello")
    (root / "sos.toml").unlink()
    with pytest.raises(ProjectError, match=r"(?s)sos.toml.*version = \"1.0.0\""):
        inspect_project(root)


def test_go_without_a_main_package_is_refused(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module example.com/lib\n\ngo 1.19\n")
    (tmp_path / "sos.toml").write_text('version = "1.0.0"\n')
    (tmp_path / "lib.go").write_text("package lib\n")
    with pytest.raises(ProjectError, match="no entry point"):
        inspect_project(tmp_path)


def test_go_requirements_without_go_sum_are_refused(project) -> None:
    root = project("go-hello")
    gomod = root / "go.mod"
    gomod.write_text(gomod.read_text() + "\nrequire github.com/google/uuid v1.6.0\n")
    with pytest.raises(ProjectError, match="go mod tidy"):
        inspect_project(root)


def test_missing_go_toolchain_says_how_to_install_it(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, monkeypatch, tmp_path: Path
) -> None:
    root = project("go-hello")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ToolchainMissingError, match="apt-get install golang-go"):
        build(root, cache=build_cache, catalog=catalog)


# --------------------------------------------------------------------------- jvm


@needs_jdk
def test_java_sources_compile_into_a_runnable_jar(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, serve
) -> None:
    result = build(project("java-hello"), cache=build_cache, catalog=catalog)
    meta = result.metadata
    assert (meta.name, meta.version, meta.language) == ("java-hello", "1.0.0", "jvm")
    assert meta.entry_point == "com.example.Hello"
    assert main_class_of(result.path) == "com.example.Hello"
    answer = serve(["java", "-jar", str(result.path)])
    assert (answer.status, answer.body) == (200, "hello from java\n")


@needs_jdk
def test_java_sources_anywhere_under_src_with_sos_toml_need_no_type(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog
) -> None:
    root = project("java-hello")
    (root / "src" / "main" / "java" / "com").rename(root / "src" / "com")
    shutil.rmtree(root / "src" / "main")
    result = build(root, cache=build_cache, catalog=catalog)
    assert (result.metadata.language, result.metadata.entry_point) == ("jvm", "com.example.Hello")


@needs_jdk
def test_prebuilt_jar_is_taken_as_is_with_version_from_its_name(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, tmp_path: Path
) -> None:
    jar = build(project("java-hello"), cache=build_cache, catalog=catalog).path
    prebuilt = tmp_path / "prebuilt" / "target"
    prebuilt.mkdir(parents=True)
    shutil.copy2(jar, prebuilt / "greeter-2.4.1.jar")
    result = build(prebuilt.parent, cache=build_cache, catalog=catalog)
    assert (result.metadata.name, result.metadata.version) == ("greeter", "2.4.1")
    assert result.path.read_bytes() == jar.read_bytes()


@needs_jdk
def test_maven_project_packages_offline_or_explains_what_is_missing(
    project, build_cache: BuildCache, catalog: LocalArtifactCatalog, serve
) -> None:
    if not shutil.which("mvn"):
        pytest.skip("mvn not installed")
    try:
        result = build(project("maven-hello"), cache=build_cache, catalog=catalog)
    except BuildFailedError as exc:
        assert "Maven could not get its plugins" in exc.message
        pytest.skip("Maven plugins are neither in ~/.m2 nor reachable: " + exc.message[:200])
    assert result.metadata.name == "hello-maven"
    assert result.metadata.entry_point == "com.example.Hello"
    log = result.log.read_text()
    assert "$ " in log and "\x1b" not in log  # no colour codes from Maven in the log
    answer = serve(["java", "-jar", str(result.path)])
    assert answer.body == "hello from java\n"


def test_java_sources_without_name_and_version_are_refused(project) -> None:
    root = project("java-hello")
    (root / "sos.toml").unlink()
    with pytest.raises(ProjectError, match=r"need a name and a version in sos.toml"):
        inspect_project(root)


def test_maven_runtime_dependencies_without_a_bundling_plugin_are_refused(project) -> None:
    root = project("maven-hello")
    pom = root / "pom.xml"
    pom.write_text(
        pom.read_text().replace(
            "<build>",
            "<dependencies><dependency><groupId>com.google.code.gson</groupId>"
            "<artifactId>gson</artifactId><version>2.11.0</version></dependency>"
            "</dependencies>\n  <build>",
        )
    )
    with pytest.raises(ProjectError, match=r"gson.*maven-shade-plugin"):
        inspect_project(root)


def test_gradle_project_without_a_jar_says_to_run_gradle(tmp_path: Path) -> None:
    (tmp_path / "build.gradle").write_text("plugins { id 'java' }\n")
    with pytest.raises(ProjectError, match="gradle jar"):
        inspect_project(tmp_path)
