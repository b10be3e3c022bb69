"""Python artifacts: a shiv zipapp holding the app, every dependency and a launcher.

``PORT=8000 python ARTIFACT.pyz`` serves the app (WSGI or ASGI, found by importing it at
build time) with gunicorn, honouring the revision's ``GunicornConfig`` through the
``SOS_*`` variables of ``sos.launch``. Nothing is installed at start-up: shiv unpacks the
packages once into ``$SHIV_ROOT`` (default ``~/.shiv``) and later starts reuse them.

The build, in layers:

1. the project's own code: built with its build backend (``pip install --no-deps`` of a
   copy of the project), or copied as is when it has no ``[build-system]``;
2. dependencies: the pinned set (``sos.build._pyreqs``; version ranges are first resolved
   by pip into ``requirements.lock``, ``sos.build._pylock``) plus the server (gunicorn, and
   uvicorn for ASGI), installed by the *runtime's* interpreter with ``pip --target`` into
   an empty directory, cached by the exact dependency set;
3. the app is imported from those layers alone (``python -S``), which catches missing
   dependencies and tells WSGI from ASGI;
4. shiv packs the layers reproducibly: the same source gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from sos.build import _launcher, _pycheck, _pylock
from sos.build._pyreqs import LOCK_FILE, LOCK_FILES, Dependency, DependencySet, read_dependencies
from sos.build._zipapp import build_deps_zip, write_zipapp
from sos.build.base import BuildContext, Builder, BuiltArtifact, Project
from sos.build.cache import IGNORED_DIRS, fingerprint, stable_key
from sos.build.errors import BuildFailedError, ProjectError, ToolchainMissingError
from sos.build.registry import register_builder
from sos.build.settings import SosSettings, read_toml

__all__ = ["PythonBuilder", "server_requirements"]

logger = logging.getLogger(__name__)

_APP = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(\(\))?$")
#: frameworks whose apps are ASGI; a first guess, checked by importing the app
_ASGI_HINTS = frozenset({"fastapi", "starlette", "quart", "litestar", "sanic", "flight-sos"})
#: the uvicorn worker for gunicorn (``uvicorn.workers`` is deprecated in favour of it)
UVICORN_WORKER_VERSION = "0.4.0"
#: files of a project without a build backend that are not shipped
_NOT_SHIPPED = frozenset(
    {"pyproject.toml", "setup.cfg", "sos.toml", "tests", "test", "build", *LOCK_FILES}
)


def _our_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def server_requirements(interface: str, present: set[str]) -> list[str]:
    """What serves an app of ``interface``, pinned to the versions SOS itself runs with;
    packages the project already pins (``present``) are left to the project."""
    wanted: list[tuple[str, str | None]] = []
    if interface in ("wsgi", "asgi"):
        wanted.append(("gunicorn", _our_version("gunicorn")))
    if interface == "asgi":
        wanted += [
            ("uvicorn", _our_version("uvicorn")),
            ("uvicorn-worker", UVICORN_WORKER_VERSION),
            ("uvloop", _our_version("uvloop")),
            ("httptools", _our_version("httptools")),
        ]
    lines = []
    for name, version in wanted:
        if canonicalize_name(name) in present:
            continue
        if version is None:
            if name in ("uvloop", "httptools"):  # speedups, optional
                continue
            raise ToolchainMissingError(
                name, "serving Python apps", f"pip install {name} into the SOS environment"
            )
        lines.append(f"{name}=={version}")
    return lines


def _copy_replacing(src: str, dst: str) -> None:
    """copy2 that never writes through a hard link into the cache."""
    if os.path.lexists(dst):
        os.unlink(dst)
    shutil.copy2(src, dst)


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {
        n
        for n in names
        if n in IGNORED_DIRS or n.endswith((".pyc", ".egg-info")) or n in {"build", ".eggs"}
    }


@register_builder
class PythonBuilder(Builder):
    name = "python"
    language = "python"
    steps = ("Build the project code", "Resolve dependencies", "Check the app", "Package (shiv)")
    ignored_dirs = frozenset({"build", ".eggs", "htmlcov"})
    lock_files = LOCK_FILES

    @classmethod
    def detect(cls, root: Path) -> str | None:
        for marker in ("pyproject.toml", "setup.py", "setup.cfg", *LOCK_FILES):
            if (root / marker).is_file():
                return marker
        return None

    # ------------------------------------------------------------------ inspect

    def inspect(self, root: Path, settings: SosSettings) -> Project:
        pyproject = root / "pyproject.toml"
        data = read_toml(pyproject) if pyproject.is_file() else {}
        table = data.get("project", {})
        if not isinstance(table, dict):
            raise ProjectError("[project] must be a table", file=pyproject)
        has_backend = "build-system" in data or (root / "setup.py").is_file()
        dynamic = table.get("dynamic") or []
        manifest = pyproject if pyproject.is_file() else root / (self.detect(root) or "")
        settings_file = settings.source or pyproject

        name = settings.name or table.get("name")
        if not name and not has_backend:
            raise ProjectError(
                'the project has no name: set [project] name = "my-service" in pyproject.toml '
                "(or name in sos.toml)",
                file=manifest,
                field="project.name",
            )
        version = settings.version or table.get("version")
        version_from_build = (
            not version
            and has_backend
            and ("version" in dynamic or not pyproject.is_file() or "project" not in data)
        )
        if not version and not version_from_build:
            raise ProjectError(
                'the version is missing: set [project] version = "1.0.0" in pyproject.toml '
                '(or version = "1.0.0" in sos.toml); artifacts are named by name and version',
                file=manifest,
                field="project.version",
            )

        interface, target = self._entry(settings, settings_file)
        found = read_dependencies(root, table, pyproject if pyproject.is_file() else None)
        return Project(
            root=root,
            builder=self.name,
            language="python",
            name=str(name) if name else None,
            version=str(version) if version else None,
            entry_point=target,
            settings=settings,
            manifest=manifest,
            details={
                "interface": interface,
                "dependencies": found.dependencies,
                "pip_options": found.options,
                "lock_file": found.lock,
                "locking": found,
                "has_backend": has_backend,
                "requires_python": table.get("requires-python"),
            },
        )

    @staticmethod
    def _entry(settings: SosSettings, where: Path) -> tuple[str | None, str]:
        if settings.app and settings.command:
            raise ProjectError(
                "both app and command are set; keep one: app for a WSGI/ASGI app, command "
                "for a program that serves on $PORT itself",
                file=where,
                field="tool.sos",
            )
        if settings.command:
            if not settings.command.strip():
                raise ProjectError("command is empty", file=where, field="tool.sos.command")
            return "command", settings.command
        if settings.app:
            if not _APP.fullmatch(settings.app):
                raise ProjectError(
                    f"app {settings.app!r} must look like 'package.module:app' (or "
                    "'package.module:create_app()' for a factory)",
                    file=where,
                    field="tool.sos.app",
                )
            return settings.interface, settings.app
        raise ProjectError(
            "no entry point: tell SOS what to serve, in pyproject.toml:\n\n"
            "    [tool.sos]\n"
            '    app = "mypackage.web:app"        # a WSGI or ASGI app\n\n'
            'or command = "python -m mypackage" for a program that serves on $PORT itself',
            file=where,
            field="tool.sos.app",
        )

    # ------------------------------------------------------------------ lock

    def lock(self, project: Project, ctx: BuildContext, *, frozen: bool) -> Project:
        found: DependencySet = project.details["locking"]
        declared = found.declared
        if declared is None:
            return project
        python, info = self._interpreter(ctx)
        why = found.needs_lock or _pylock.lock_problem(found.header, info)
        if why is None:
            ctx.log.write(f"{LOCK_FILE} matches {declared.what}: installing what it pins")
            return project
        lock = project.root / LOCK_FILE
        if frozen:
            loose = ", ".join(declared.unpinned) or "the declared dependencies"
            if why == "missing":
                problem = (
                    f"{declared.what} allow more than one version ({loose}) and there is no "
                    f"{LOCK_FILE}"
                )
            else:
                problem = f"{LOCK_FILE} is out of date: {why}"
            raise ProjectError(
                f"{problem}; --frozen builds only from a lock that matches. Run `sos build` "
                f"without --frozen to resolve {declared.what} into {LOCK_FILE}, commit it, "
                "and build again",
                file=lock if why != "missing" else declared.source,
                field="project.dependencies"
                if why == "missing" and declared.source.name == "pyproject.toml"
                else None,
                details={"lock_file": str(lock), "problem": why},
            )
        if why != "missing":
            ctx.log.write(f"{LOCK_FILE} is out of date ({why}): resolving again")
        env = {"PYTHONNOUSERSITE": "1", "PIP_NO_INPUT": "1"}
        items = _pylock.resolve(declared, project.root, ctx, self._pip(python, ctx), info, env)
        _pylock.write_lock(declared, items, project.root, info)
        what = "resolved" if why == "missing" else "updated"
        count = len(declared.unpinned)
        if count:
            names = ", ".join(declared.unpinned)
            what += f" {count} unpinned {'dependency' if count == 1 else 'dependencies'} ({names})"
        else:
            what += f" {declared.what}"
        ctx.warn(
            f"{what} into {lock}, {len(items)} {'package' if len(items) == 1 else 'packages'} "
            "in all; commit it, so that every build installs these exact versions"
        )
        return self.inspect(project.root, project.settings)

    # ------------------------------------------------------------------ build

    def _interpreter(self, ctx: BuildContext) -> tuple[str, dict[str, Any]]:
        python = shutil.which(ctx.python) or ctx.python
        if not Path(python).exists():
            raise ToolchainMissingError(
                ctx.python, "building Python artifacts", "apt-get install python3 python3-pip"
            )
        probe = subprocess.run(
            [
                python,
                "-c",
                "import json,sys,sysconfig;print(json.dumps({'version':'%d.%d'%sys.version_info"
                "[:2],'full':sys.version.split()[0],'platform':sysconfig.get_platform(),"
                "'impl':sys.implementation.name}))",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            raise BuildFailedError(
                f"cannot run the Python interpreter {python}", output=probe.stderr
            )
        info: dict[str, Any] = json.loads(probe.stdout)
        pip = subprocess.run(
            [python, "-m", "pip", "--version"], capture_output=True, text=True, check=False
        )
        if pip.returncode != 0:
            raise ToolchainMissingError(
                f"{python} -m pip",
                "resolving Python dependencies",
                f"{python} -m ensurepip, or apt-get install python3-pip",
            )
        info["pip"] = pip.stdout.split()[1]
        return python, info

    @staticmethod
    def _check_requires_python(project: Project, info: dict[str, Any]) -> None:
        wanted = project.details.get("requires_python")
        if not wanted:
            return
        try:
            spec = SpecifierSet(str(wanted))
        except InvalidSpecifier:
            raise ProjectError(
                f"requires-python {wanted!r} is not a version specifier (like '>=3.11')",
                file=project.manifest,
                field="project.requires-python",
            ) from None
        if not spec.contains(info["full"], prereleases=True):
            raise ProjectError(
                f"the project requires Python {wanted} but the artifact would run on Python "
                f"{info['full']}: build with `sos build --python /path/to/python3.X` for the "
                "interpreter your runtime uses, or widen requires-python",
                file=project.manifest,
                field="project.requires-python",
            )

    def cache_inputs(self, project: Project, ctx: BuildContext) -> dict[str, Any]:
        _, info = self._interpreter(ctx)
        self._check_requires_python(project, info)
        deps: list[Dependency] = project.details["dependencies"]
        local = {
            str(d.local_path): fingerprint(d.local_path)
            for d in deps
            if d.local_path is not None and d.local_path.is_dir()
        }
        return {
            "python": info,
            "local": local,
            "launcher": fingerprint(Path(_launcher.__file__).parent),
        }

    def _pip(self, python: str, ctx: BuildContext) -> list[str]:
        argv = [
            python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-compile",
            "--no-warn-script-location",
            "--progress-bar",
            "off",
        ]
        if ctx.offline:
            argv.append("--no-index")
        return argv

    def build(self, project: Project, ctx: BuildContext) -> BuiltArtifact:
        python, info = self._interpreter(ctx)
        ctx.log.write(f"runtime Python: {python} ({info['full']}, {info['platform']})")
        details = project.details
        env = {"PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "PIP_NO_INPUT": "1"}

        with ctx.step("Build the project code"):
            code = ctx.workdir / "code"
            name, version = self._project_layer(project, ctx, python, code, env)

        deps: list[Dependency] = details["dependencies"]
        present = {d.name for d in deps if d.name}
        interface: str | None = details["interface"]
        guess = interface or ("asgi" if present & _ASGI_HINTS else "wsgi")
        strip = project.settings.strip_tests
        with ctx.step("Resolve dependencies"):
            site, hit = self._dependencies(project, ctx, python, info, guess, env)
        with ctx.step("Check the app"):
            # the check imports exactly what will ship: the staged site-packages
            staging = self._stage(ctx, site, code, strip)
            check = self._check(project, ctx, python, [staging], interface or guess)
            found = check.get("interface", guess)
            if found != guess:
                ctx.log.write(f"the app is {found.upper()}, not {guess.upper()}: resolving again")
                site, hit = self._dependencies(project, ctx, python, info, found, env)
                staging = self._stage(ctx, site, code, strip)
        interface = found
        with ctx.step("Package (shiv)"):
            target = ctx.workdir / f"{name}-{version}.pyz"
            packages = self._package(project, ctx, staging, site, code, target, name, interface)
        entry = project.entry_point
        return BuiltArtifact(
            path=target,
            runtime_version=info["version"],
            entry_point=entry,
            name=name,
            version=version,
            extra={
                "interface": interface,
                "server": "gunicorn" if interface != "command" else None,
                "python": info["full"],
                "platform": info["platform"],
                "packages": packages,
                "dependencies_cached": hit,
                **({"lock": lock} if (lock := _lock_record(project)) else {}),
                **({"models": models} if (models := _models(code)) else {}),
            },
        )

    def _project_layer(
        self, project: Project, ctx: BuildContext, python: str, code: Path, env: dict[str, str]
    ) -> tuple[str, str]:
        root = project.root
        code.mkdir(parents=True)
        if not project.details["has_backend"]:
            include = project.settings.include
            if include:
                for pattern in include:
                    matches = sorted(root.glob(pattern))
                    if not matches:
                        raise ProjectError(
                            f"include pattern {pattern!r} matches nothing in {root}",
                            file=project.settings.source,
                            field="tool.sos.include",
                        )
                    for match in matches:
                        rel = match.relative_to(root)
                        if match.is_dir():
                            shutil.copytree(match, code / rel, ignore=_ignore, dirs_exist_ok=True)
                        else:
                            (code / rel).parent.mkdir(parents=True, exist_ok=True)
                            shutil.copy2(match, code / rel)
            else:
                base = root / "src" if (root / "src").is_dir() else root
                for entry in sorted(base.iterdir()):
                    if entry.name in _NOT_SHIPPED or entry.name.startswith("."):
                        continue
                    if entry.name in IGNORED_DIRS or entry.name.endswith(".egg-info"):
                        continue
                    if entry.is_dir():
                        shutil.copytree(entry, code / entry.name, ignore=_ignore)
                    elif entry.suffix != ".pyc":
                        shutil.copy2(entry, code / entry.name)
            ctx.log.write(f"copied the project's files (no [build-system]) from {root}")
            assert project.name and project.version
            return project.name, project.version
        source = ctx.workdir / "source"
        shutil.copytree(root, source, ignore=_ignore, symlinks=True)
        argv = [*self._pip(python, ctx), "--no-deps", "--target", str(code), str(source)]
        ctx.run(argv, cwd=ctx.workdir, what="building the project with its build backend", env=env)
        _clean_site(code)
        dist = _find_dist(code, project.name)
        name = project.name or (dist["Name"] if dist else None)
        version = project.version or (dist["Version"] if dist else None)
        if not name or not version:
            raise ProjectError(
                "the build backend did not report a name and version; set them in "
                "pyproject.toml [project] (or in sos.toml)",
                file=project.manifest,
            )
        return name, version

    def _dependencies(
        self,
        project: Project,
        ctx: BuildContext,
        python: str,
        info: dict[str, Any],
        interface: str,
        env: dict[str, str],
    ) -> tuple[Path, bool]:
        deps: list[Dependency] = project.details["dependencies"]
        present = {d.name for d in deps if d.name}
        lines = [d.line for d in deps] + server_requirements(interface, present)
        options: list[str] = project.details["pip_options"]
        local = {
            d.line: fingerprint(d.local_path) if d.local_path.is_dir() else d.local_path.stat()
            for d in deps
            if d.local_path is not None
        }
        hashes = sorted(h for d in deps for h in d.hashes)
        key = stable_key("python-deps", info, sorted(lines), options, local, hashes)
        ctx.log.write("dependency set:\n  " + "\n  ".join(lines or ["(none)"]))

        def fill(tmp: Path) -> None:
            site = tmp / "site-packages"
            site.mkdir()
            if not lines:
                return
            requirements = ctx.workdir / f"requirements-{key[:8]}.txt"
            requirements.write_text("\n".join([*options, *lines]) + "\n", encoding="utf-8")
            report = ctx.workdir / f"installed-{key[:8]}.json"
            argv = [
                *self._pip(python, ctx),
                "--target",
                str(site),
                "--report",
                str(report),
                "-r",
                str(requirements),
            ]
            try:
                ctx.run(argv, cwd=project.root, what="resolving dependencies with pip", env=env)
            except BuildFailedError as exc:
                if (
                    "No matching distribution" in exc.message
                    or "ResolutionImpossible" in exc.message
                ):
                    raise BuildFailedError(
                        "pip could not find or reconcile the pinned dependencies: check the "
                        "pins exist for Python "
                        + info["version"]
                        + " and do not conflict\n"
                        + exc.message
                    ) from None
                raise
            _pylock.check_hashes(report, deps)
            _clean_site(site)

        entry, hit = ctx.cache.get_or_create("python-deps", key, fill)
        ctx.log.write(("reused" if hit else "resolved") + f" dependencies: {entry}")
        return entry / "site-packages", hit

    def _check(
        self, project: Project, ctx: BuildContext, python: str, layers: list[Path], mode: str
    ) -> dict[str, Any]:
        is_command = mode == "command"
        if not is_command and not project.settings.import_check:
            if not project.details["interface"]:
                raise ProjectError(
                    "import_check = false needs interface = 'wsgi' or 'asgi' as well",
                    file=project.settings.source,
                    field="tool.sos.interface",
                )
            return {"interface": project.details["interface"]}
        argv = [
            python,
            "-S",
            _pycheck.__file__,
            *map(str, layers),
            "--",
            "command" if is_command else "app",
            project.entry_point,
        ]
        out = ctx.run(
            argv,
            cwd=ctx.workdir,
            what="importing the app",
            env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "PYTHONPATH": ""},
            timeout=300,
        )
        line = next((ln for ln in out.splitlines() if ln.startswith("SOS_CHECK ")), None)
        if line is None:
            raise BuildFailedError("the app check printed no result", log=ctx.log.path, output=out)
        result: dict[str, Any] = json.loads(line.removeprefix("SOS_CHECK "))
        where = project.settings.source or project.manifest
        error = result.get("error")
        if error == "missing_module":
            missing = result.get("module") or "?"
            raise ProjectError(
                f"the app imports {missing!r}, which no declared dependency provides: add "
                f"the package that provides it to the dependencies and build again"
                f"\n{_tail(result.get('trace', ''))}",
                file=where,
                field="project.dependencies",
                details={"module": missing},
            )
        if error:
            raise ProjectError(
                f"cannot load app {project.entry_point!r}: {result.get('message')}\n"
                f"{_tail(result.get('trace', ''))}\nIf the app needs settings at import "
                "time, give them defaults, or set import_check = false and interface.",
                file=where,
                field="tool.sos.app",
            )
        if is_command and not result.get("found"):
            how = "module" if result.get("how") == "module" else "console script"
            raise ProjectError(
                f"command {project.entry_point!r} runs the {how} {result.get('program')!r}, "
                "which neither the project nor its dependencies provide; a command is "
                "'python -m MODULE ...' or a console script of a dependency",
                file=where,
                field="tool.sos.command",
            )
        declared = project.details["interface"]
        if declared and not is_command and declared != result.get("interface"):
            raise ProjectError(
                f"interface is set to {declared!r} but the app is "
                f"{str(result.get('interface')).upper()}; remove interface or correct it",
                file=where,
                field="tool.sos.interface",
            )
        ctx.log.write(f"app check: {json.dumps(result)}")
        return result

    def _stage(self, ctx: BuildContext, site: Path, code: Path, strip_tests: bool) -> Path:
        """One site-packages tree: the dependencies (hard-linked from the cache, never
        changed; their test suites left out unless told otherwise) under the project code."""
        staging = ctx.workdir / "site-packages"
        if staging.exists():
            shutil.rmtree(staging)
        shutil.copytree(
            site,
            staging,
            copy_function=os.link,
            symlinks=True,
            ignore=_test_suites if strip_tests else None,
        )
        shutil.copytree(code, staging, copy_function=_copy_replacing, dirs_exist_ok=True)
        return staging

    def _package(
        self,
        project: Project,
        ctx: BuildContext,
        staging: Path,
        site: Path,
        code: Path,
        target: Path,
        name: str,
        interface: str,
    ) -> list[str]:
        launcher = ctx.workdir / "launcher"
        launcher.mkdir(exist_ok=True)
        shutil.copy2(_launcher.__file__, launcher / "_sos_launcher.py")
        config = {
            "name": name,
            "interface": interface,
            "app": project.entry_point if interface != "command" else None,
            "command": project.entry_point if interface == "command" else None,
        }
        (launcher / "_sos_launcher.json").write_text(json.dumps(config, indent=2) + "\n")
        strip = project.settings.strip_tests

        def fill(tmp: Path) -> None:
            tree = site
            if strip:
                tree = tmp / "tree"
                shutil.copytree(
                    site, tree, copy_function=os.link, symlinks=True, ignore=_test_suites
                )
            build_deps_zip(tree, tmp / "deps.zip")
            if tree != site:
                shutil.rmtree(tree)

        # dependencies are deflated once per dependency set; a build copies them as they are
        key = stable_key("python-deps-zip", 1, site.parent.name, strip)
        entry, hit = ctx.cache.get_or_create("python-deps-zip", key, fill)
        ctx.log.write(("reused" if hit else "compressed") + f" the dependencies: {entry}")
        write_zipapp(
            target,
            deps_zip=entry / "deps.zip",
            code=[code, launcher],
            entry_point="_sos_launcher:main",
            extend_pythonpath=interface == "command",
        )
        packages = sorted(
            f"{d['Name']}=={d['Version']}" for d in _dists(staging) if d["Name"] and d["Version"]
        )
        ctx.log.write(f"packed {len(packages)} distributions into {target.name}")
        return packages


def _lock_record(project: Project) -> dict[str, Any] | None:
    """What the artifact's metadata says of the lock file its dependencies came from."""
    lock: Path | None = project.details["lock_file"]
    if lock is None:
        return None
    found: DependencySet = project.details["locking"]
    deps: list[Dependency] = project.details["dependencies"]
    return {
        "file": lock.name,
        "sha256": hashlib.sha256(lock.read_bytes()).hexdigest(),
        "written_by_sos": bool(found.header),
        **({"inputs": found.header["inputs"]} if found.header else {}),
        "dependencies": [d.line if d.local_path is None else str(d.local_path) for d in deps],
    }


def _test_suites(folder: str, names: list[str]) -> set[str]:
    """Test suites inside packages (pandas/tests: 2,000 files), never imported by apps."""
    if Path(folder, "__init__.py").exists():
        return {n for n in names if n in ("tests", "test") and Path(folder, n).is_dir()}
    return set()


def _tail(trace: str, lines: int = 8) -> str:
    return "\n".join(trace.strip().splitlines()[-lines:])


def _clean_site(site: Path) -> None:
    """Drop what differs between machines or runs: bytecode, install paths, scripts."""
    for cache in site.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    for direct in site.glob("*.dist-info/direct_url.json"):
        direct.unlink()
    shutil.rmtree(site / "bin", ignore_errors=True)


def _dists(site: Path) -> list[dict[str, str]]:
    found = []
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        headers = HeaderParser().parsestr(meta.read_text(encoding="utf-8", errors="replace"))
        found.append({"Name": headers.get("Name", ""), "Version": headers.get("Version", "")})
    return found


def _find_dist(site: Path, name: str | None) -> dict[str, str] | None:
    dists = _dists(site)
    if name:
        wanted = canonicalize_name(name)
        for dist in dists:
            if canonicalize_name(dist["Name"]) == wanted:
                return dist
    return dists[0] if len(dists) == 1 else None


def _models(code: Path) -> dict[str, dict[str, str]]:
    """Trained models packed with the code: every ``model.json`` that names a version and a
    digest (as ``flight.models.save_model`` writes them), by directory, so that a revision
    says which model it serves (``sos revision show``) and a rollback names the model it
    brings back."""
    found: dict[str, dict[str, str]] = {}
    for card in sorted(code.rglob("model.json")):
        try:
            meta = json.loads(card.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict) or not {"version", "digest"} <= meta.keys():
            continue
        where = card.parent.relative_to(code).as_posix()
        found[where] = {
            key: str(meta[key]) for key in ("name", "version", "digest", "library") if key in meta
        }
    return found
