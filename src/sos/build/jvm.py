"""JVM artifacts: an executable jar, started with ``java -jar ARTIFACT.jar``.

Three ways to get it, tried in this order:

- ``pom.xml``: ``mvn package`` on a copy of the project, offline first (plugins from the
  local repository ``~/.m2``), then online if Maven Central is reachable. A project with
  runtime dependencies must bundle them (maven-shade-plugin or maven-assembly-plugin).
- a jar the project already built (``*.jar``, ``target/*.jar``, ``build/libs/*.jar``,
  e.g. from Gradle); ``main`` in sos.toml overrides its Main-Class.
- Java sources (``src/main/java`` or ``*.java``) without a build tool: ``javac`` + ``jar``,
  with ``name``, ``version`` and (if more than one class has ``main``) ``main`` in sos.toml.

The jar must name a ``Main-Class`` in its manifest: that is the entry point.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

from sos.build.base import BuildContext, Builder, BuiltArtifact, Project, Tool
from sos.build.cache import IGNORED_DIRS
from sos.build.errors import BuildFailedError, ProjectError
from sos.build.registry import register_builder
from sos.build.settings import SosSettings

__all__ = ["JvmBuilder", "main_class_of"]

JAVA = Tool("java", "building JVM artifacts", "apt-get install default-jdk-headless")
JAVAC = Tool("javac", "compiling Java sources", "apt-get install default-jdk-headless")
JAR = Tool("jar", "packing Java classes", "apt-get install default-jdk-headless")
MVN = Tool("mvn", "building Maven projects", "apt-get install maven")
#: the earliest time a zip can hold: makes jars reproducible
JAR_DATE = "1980-01-01T00:00:02Z"
_JAR_DIRS = (".", "target", "build/libs")
_NOT_RUNNABLE = ("-sources.jar", "-javadoc.jar", "-tests.jar", "-test-sources.jar")
_MAIN = re.compile(r"public\s+static\s+void\s+main\s*\(")
_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)\s*;", re.MULTILINE)
_JAR_NAME = re.compile(r"^(?P<name>.+?)-(?P<version>\d[\w.+-]*)$")
_OFFLINE_MISS = (
    "offline mode",
    "has not been downloaded",
    "Cannot access central",
    "could not be resolved",
)


def main_class_of(jar: Path) -> str | None:
    """The Main-Class a jar's manifest names, or None."""
    try:
        with zipfile.ZipFile(jar) as archive:
            manifest = archive.read("META-INF/MANIFEST.MF").decode("utf-8", errors="replace")
    except (KeyError, zipfile.BadZipFile, OSError):
        return None
    for line in manifest.replace("\r\n", "\n").replace("\n ", "").splitlines():
        if line.lower().startswith("main-class:"):
            return line.split(":", 1)[1].strip() or None
    return None


def _manifest_value(jar: Path, key: str) -> str | None:
    try:
        with zipfile.ZipFile(jar) as archive:
            text = archive.read("META-INF/MANIFEST.MF").decode("utf-8", errors="replace")
    except (KeyError, zipfile.BadZipFile, OSError):
        return None
    for line in text.splitlines():
        if line.lower().startswith(key.lower() + ":"):
            return line.split(":", 1)[1].strip() or None
    return None


def _prebuilt_jars(root: Path) -> list[Path]:
    jars: list[Path] = []
    for folder in _JAR_DIRS:
        jars += [
            p
            for p in sorted((root / folder).glob("*.jar"))
            if not p.name.endswith(_NOT_RUNNABLE) and not p.name.startswith("original-")
        ]
    return jars


def _sources(root: Path) -> list[Path]:
    base = root / "src" / "main" / "java"
    if base.is_dir():
        return sorted(base.rglob("*.java"))
    found = sorted(root.glob("*.java"))
    return found or sorted((root / "src").rglob("*.java")) if (root / "src").is_dir() else found


def _java_major() -> str:
    out = subprocess.run([JAVA.find(), "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return "unknown"
    major = match.group(1)
    return match.group(2) or major if major == "1" else major


def _pom(root: Path) -> dict[str, Any]:
    path = root / "pom.xml"
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise ProjectError(f"is not valid XML: {exc}", file=path) from None
    top = tree.getroot()
    ns = top.tag[: top.tag.index("}") + 1] if top.tag.startswith("{") else ""

    def text(node: ET.Element | None, tag: str) -> str | None:
        found = node.find(ns + tag) if node is not None else None
        return found.text.strip() if found is not None and found.text else None

    parent = top.find(ns + "parent")
    props = {
        child.tag.removeprefix(ns): (child.text or "").strip()
        for child in (top.find(ns + "properties") or [])
    }
    version = text(top, "version") or text(parent, "version")
    if version:
        version = re.sub(r"\$\{([^}]+)\}", lambda m: props.get(m.group(1), m.group(0)), version)
    plugins = [text(p, "artifactId") or "" for p in top.iter(ns + "plugin")]
    dependencies = [
        text(d, "artifactId")
        for d in top.iter(ns + "dependency")
        if (text(d, "scope") or "compile") in ("compile", "runtime")
    ]
    main_class = next((m.text.strip() for m in top.iter(ns + "mainClass") if m.text), None)
    return {
        "artifact_id": text(top, "artifactId"),
        "version": version,
        "plugins": plugins,
        "dependencies": [d for d in dependencies if d],
        "main_class": main_class,
    }


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if n in IGNORED_DIRS or n == "target"}


@register_builder
class JvmBuilder(Builder):
    name = "jvm"
    language = "jvm"
    steps = ("Build the jar",)
    ignored_dirs = frozenset({".gradle", ".m2"})

    @classmethod
    def detect(cls, root: Path) -> str | None:
        for marker in ("pom.xml", "build.gradle", "build.gradle.kts"):
            if (root / marker).is_file():
                return marker
        jars = _prebuilt_jars(root)
        if jars:
            return jars[0].relative_to(root).as_posix()
        if (root / "src" / "main" / "java").is_dir() or list(root.glob("*.java")):
            return "*.java"
        if (root / "sos.toml").is_file() and next((root / "src").rglob("*.java"), None):
            return "src/**/*.java"
        return None

    def inspect(self, root: Path, settings: SosSettings) -> Project:
        where = settings.source or root / "sos.toml"
        if (root / "pom.xml").is_file():
            pom = _pom(root)
            name = settings.name or pom["artifact_id"]
            version = settings.version or pom["version"]
            if not version or "${" in version:
                raise ProjectError(
                    "the version is missing (or a property SOS cannot resolve): set "
                    "<version>1.0.0</version>, or version in sos.toml",
                    file=root / "pom.xml",
                    field="version",
                )
            bundles = {"maven-shade-plugin", "maven-assembly-plugin"} & set(pom["plugins"])
            if pom["dependencies"] and not bundles:
                raise ProjectError(
                    f"the project depends on {', '.join(pom['dependencies'])} at run time, but "
                    "a plain jar does not carry them, so `java -jar` would fail: add "
                    "maven-shade-plugin (or maven-assembly-plugin with jar-with-dependencies)",
                    file=root / "pom.xml",
                    field="build.plugins",
                )
            mode, manifest, details = "maven", root / "pom.xml", pom
        elif jars := _prebuilt_jars(root):
            runnable = [j for j in jars if main_class_of(j) or settings.main]
            if len(runnable) > 1:
                raise ProjectError(
                    "several runnable jars: "
                    + ", ".join(j.relative_to(root).as_posix() for j in runnable)
                    + "; keep one, or build with --type and a clean directory",
                    file=root,
                )
            jar = (runnable or jars)[0]
            stem = _JAR_NAME.match(jar.stem)
            name = (
                settings.name
                or _manifest_value(jar, "Implementation-Title")
                or (stem.group("name") if stem else jar.stem)
            )
            version = (
                settings.version
                or _manifest_value(jar, "Implementation-Version")
                or (stem.group("version") if stem else None)
            )
            if not version:
                raise ProjectError(
                    f"the version of {jar.name} is unknown (no Implementation-Version, no "
                    'version in the file name): set version = "1.0.0" in sos.toml',
                    file=where,
                    field="version",
                )
            mode, manifest, details = "jar", jar, {"jar": jar}
        elif (root / "build.gradle").is_file() or (root / "build.gradle.kts").is_file():
            raise ProjectError(
                "Gradle projects are built by Gradle: run `gradle jar` (or `bootJar`) and "
                "then sos build, which uses the jar in build/libs",
                file=root,
            )
        else:
            sources = _sources(root)
            if not sources:
                raise ProjectError("no pom.xml, jar or Java sources found", file=root)
            name, version = settings.name, settings.version
            if not name or not version:
                raise ProjectError(
                    "Java sources without a build tool need a name and a version in "
                    'sos.toml:\n\n    name = "hello"\n    version = "1.0.0"\n',
                    file=where,
                    field="version" if name else "name",
                )
            mode, manifest, details = "javac", where, {"sources": sources}
        entry = settings.main or details.get("main_class") or ""
        if mode == "jar" and not entry:
            entry = main_class_of(details["jar"]) or ""
        if mode == "javac" and not entry:
            entry = self._find_main(root, details["sources"], where)
        if mode != "maven" and not entry:
            raise ProjectError(
                "no entry point: the jar names no Main-Class; set main = "
                '"com.example.Main" in sos.toml',
                file=where,
                field="main",
            )
        return Project(
            root=root,
            builder=self.name,
            language="jvm",
            name=name,
            version=version,
            entry_point=entry,
            settings=settings,
            manifest=manifest,
            details={**details, "mode": mode},
        )

    @staticmethod
    def _find_main(root: Path, sources: list[Path], where: Path) -> str:
        mains = []
        for source in sources:
            text = source.read_text(encoding="utf-8", errors="replace")
            if _MAIN.search(text):
                package = _PACKAGE.search(text)
                mains.append((package.group(1) + "." if package else "") + source.stem)
        if len(mains) == 1:
            return mains[0]
        raise ProjectError(
            "no entry point: "
            + (f"several classes have main ({', '.join(mains)}); " if mains else "no class has ")
            + ('say which in sos.toml: main = "com.example.Main"' if mains else "a main method"),
            file=where,
            field="main",
        )

    def cache_inputs(self, project: Project, ctx: BuildContext) -> dict[str, Any]:
        return {"java": _java_major(), "mode": project.details["mode"]}

    def build(self, project: Project, ctx: BuildContext) -> BuiltArtifact:
        assert project.name and project.version
        target = ctx.workdir / f"{project.name}-{project.version}.jar"
        mode = project.details["mode"]
        with ctx.step("Build the jar"):
            if mode == "maven":
                jar = self._maven(project, ctx)
                shutil.copy2(jar, target)
            elif mode == "jar":
                shutil.copy2(project.details["jar"], target)
                if project.settings.main and project.settings.main != main_class_of(target):
                    ctx.run(
                        [
                            JAR.find(),
                            "--update",
                            "--file",
                            str(target),
                            "--main-class",
                            project.settings.main,
                            f"--date={JAR_DATE}",
                        ],
                        cwd=ctx.workdir,
                        what="setting the jar's Main-Class",
                    )
            else:
                self._javac(project, ctx, target)
        main = main_class_of(target)
        if not main:
            raise ProjectError(
                "the jar names no Main-Class, so `java -jar` cannot start it: configure "
                "the manifest's mainClass (maven-jar-plugin or maven-shade-plugin), or set "
                'main = "com.example.Main" in sos.toml',
                file=project.manifest,
                field="mainClass",
            )
        return BuiltArtifact(
            path=target,
            runtime_version=_java_major(),
            entry_point=main,
            name=project.name,
            version=project.version,
            extra={"build": mode},
        )

    def _maven(self, project: Project, ctx: BuildContext) -> Path:
        mvn = MVN.find()
        JAVA.find()
        copy = ctx.workdir / "project"
        shutil.copytree(project.root, copy, ignore=_ignore, symlinks=True)
        argv = [
            mvn,
            "--batch-mode",  # no prompts, no progress
            "-q",
            "-Dstyle.color=never",  # no ANSI escapes in the build log
            "package",
            "-DskipTests",
            f"-Dproject.build.outputTimestamp={JAR_DATE}",
        ]
        try:
            ctx.run([*argv[:2], "-o", *argv[2:]], cwd=copy, what="mvn package (offline)")
        except BuildFailedError as offline_failure:
            missing = any(s in offline_failure.message for s in _OFFLINE_MISS)
            if not missing:
                raise
            if ctx.offline:
                raise BuildFailedError(
                    "Maven needs plugins or dependencies that are not in the local repository "
                    "(~/.m2) and --offline forbids fetching them: build once with network "
                    "access, or build the jar yourself (mvn package) and run sos build again",
                    log=ctx.log.path,
                ) from None
            ctx.log.write("offline build lacks plugins or dependencies: trying Maven Central")
            try:
                ctx.run(argv, cwd=copy, what="mvn package", timeout=900)
            except BuildFailedError as exc:
                raise BuildFailedError(
                    "Maven could not get its plugins or dependencies: the local repository "
                    "(~/.m2) lacks them and the remote repository is not reachable. Build the "
                    "jar where Maven Central is reachable (`mvn package`) and run sos build "
                    "again in a directory holding the jar, or fill ~/.m2 "
                    "(`mvn dependency:go-offline`)",
                    log=ctx.log.path,
                    output=exc.output,
                ) from None
        jars = [j for j in _prebuilt_jars(copy) if j.parent.name == "target"]
        with_main = [j for j in jars if main_class_of(j)]
        if not jars:
            raise BuildFailedError("mvn package produced no jar in target/", log=ctx.log.path)
        bundled = [j for j in with_main if "with-dependencies" in j.name] or with_main or jars
        return max(bundled, key=lambda j: j.stat().st_size)

    def _javac(self, project: Project, ctx: BuildContext, target: Path) -> None:
        javac, jar = JAVAC.find(), JAR.find()
        classes = ctx.workdir / "classes"
        classes.mkdir()
        sources: list[Path] = project.details["sources"]
        ctx.run(
            [
                javac,
                "--release",
                _java_major(),
                "-encoding",
                "UTF-8",
                "-d",
                str(classes),
                *map(str, sources),
            ],
            cwd=project.root,
            what="javac",
        )
        resources = project.root / "src" / "main" / "resources"
        if resources.is_dir():
            shutil.copytree(resources, classes, dirs_exist_ok=True)
        ctx.run(
            [
                jar,
                "--create",
                "--file",
                str(target),
                "--main-class",
                project.entry_point,
                f"--date={JAR_DATE}",
                "-C",
                str(classes),
                ".",
            ],
            cwd=ctx.workdir,
            what="jar",
        )
