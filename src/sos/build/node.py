"""Node artifacts: one ``.js`` file bundled by ``@vercel/ncc``, started with
``node ARTIFACT.js``.

- The entry point is ``"sos": {"main": "server.js"}`` in package.json, else the file that
  ``scripts.start`` runs with ``node``, else ``main``, else a single ``bin``.
- Dependencies are pinned by a lock file (``package-lock.json`` or
  ``npm-shrinkwrap.json``). A project without one gets one, written beside package.json
  by ``npm install --package-lock-only`` (and brought up to date the same way when
  ``dependencies`` changed), so that no transitive version floats; ``--frozen`` builds
  refuse a missing or stale lock instead. They are installed with ``npm ci`` into a cache
  directory keyed by the dependency set, never into the project, with install scripts off.
- ncc is installed once into the cache's tool directory with npm (not globally) and reused.
- The bundle must be one file: a package that needs files at run time (assets, native
  ``.node`` modules) is refused with their names. ES module projects are bundled too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

from sos.build.base import BuildContext, Builder, BuiltArtifact, Project, Tool
from sos.build.cache import IGNORED_DIRS, stable_key
from sos.build.errors import BuildFailedError, ProjectError
from sos.build.registry import register_builder
from sos.build.settings import SosSettings, read_json

__all__ = ["NCC_VERSION", "NodeBuilder"]

#: the @vercel/ncc release SOS bundles with (override with SOS_NCC_VERSION)
NCC_VERSION = "0.38.4"
NODE = Tool("node", "building Node artifacts", "apt-get install nodejs npm")
NPM = Tool("npm", "installing Node dependencies and ncc", "apt-get install npm")
LOCK_FILES = ("npm-shrinkwrap.json", "package-lock.json")
_NOT_FOUND = re.compile(r"Module not found: Error: Can't resolve '([^']+)'")
_REQUIRE = re.compile(
    r"""(?:require\s*\(\s*|import\s*\(\s*|\bfrom\s+|^\s*import\s+)['"]([^'"]+)['"]""",
    re.MULTILINE,
)
_UNRESOLVED = re.compile(r'eval\("require"\)\("([^"]+)"\)')
_SOURCE_SUFFIXES = (".js", ".cjs", ".mjs", ".ts", ".jsx", ".tsx")


def _package_of(specifier: str) -> str | None:
    """The npm package a bare ``require`` specifier names (None for relative paths)."""
    if specifier.startswith((".", "/")) or specifier.startswith("node:"):
        return None
    parts = specifier.split("/")
    return "/".join(parts[:2]) if specifier.startswith("@") else parts[0]


def _builtins() -> set[str]:
    node = shutil.which("node")
    if node is None:
        return set()
    import subprocess

    out = subprocess.run(
        [node, "-p", "JSON.stringify(require('module').builtinModules)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return set(json.loads(out.stdout)) if out.returncode == 0 else set()


def undeclared_requires(root: Path, declared: set[str]) -> dict[str, str]:
    """Packages the project's own sources require but ``dependencies`` does not declare:
    package -> the first file that requires it."""
    builtins = _builtins()
    if not builtins:
        return {}
    missing: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or path.suffix not in _SOURCE_SUFFIXES:
            continue
        if any(
            part in IGNORED_DIRS or part in ("test", "tests", "__tests__") for part in rel.parts
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for specifier in _REQUIRE.findall(text):
            package = _package_of(specifier)
            if package and package not in declared and package not in builtins:
                missing.setdefault(package, rel.as_posix())
    return missing


#: npm options of every install SOS runs: no install scripts, no audit, only errors
_NPM_QUIET = ("--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")


def _read_lock(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _stale(lock: Path, deps: dict[str, Any]) -> str | None:
    """Why ``lock`` does not match package.json's ``dependencies`` (None when it does, or
    when it is too old a lock, lockfileVersion 1, to tell)."""
    data = _read_lock(lock)
    if not data:
        return "it is not valid JSON"
    top = data.get("packages", {}).get("")
    if not isinstance(top, dict):
        return None
    locked = top.get("dependencies") or {}
    if locked == deps:
        return None
    changed = sorted(set(locked) ^ set(deps) | {k for k in deps if locked.get(k) != deps[k]})
    return f"package.json's dependencies changed since it was written ({', '.join(changed)})"


def _lock_record(lock: Path) -> dict[str, Any]:
    """What the artifact's metadata says of the lock its dependencies came from."""
    packages = _read_lock(lock).get("packages", {})
    return {
        "file": lock.name,
        "sha256": hashlib.sha256(lock.read_bytes()).hexdigest(),
        "dependencies": sorted(
            f"{key.rsplit('node_modules/', 1)[-1]}@{value.get('version')}"
            for key, value in packages.items()
            if key and not value.get("dev") and isinstance(value, dict)
        ),
    }


def _artifact_name(name: str) -> str:
    return name.lstrip("@").replace("/", "-")


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if n in IGNORED_DIRS}


@register_builder
class NodeBuilder(Builder):
    name = "node"
    language = "node"
    steps = ("Install ncc", "Install dependencies", "Bundle (ncc)")
    ignored_dirs = frozenset({"coverage", ".next", "out"})
    lock_files = LOCK_FILES

    @classmethod
    def detect(cls, root: Path) -> str | None:
        return "package.json" if (root / "package.json").is_file() else None

    def inspect(self, root: Path, settings: SosSettings) -> Project:
        manifest = root / "package.json"
        if not manifest.is_file():
            raise ProjectError("no package.json: this is not a Node project", file=root)
        data = read_json(manifest)
        name = settings.name or (_artifact_name(str(data["name"])) if data.get("name") else None)
        if not name:
            raise ProjectError(
                'the project has no name: add "name": "my-service"', file=manifest, field="name"
            )
        version = settings.version or data.get("version")
        if not version:
            raise ProjectError(
                'the version is missing: add "version": "1.0.0"; artifacts are named by '
                "name and version",
                file=manifest,
                field="version",
            )
        entry = self._entry(root, data, settings, manifest)
        deps = data.get("dependencies") or {}
        if not isinstance(deps, dict):
            raise ProjectError("must be an object", file=manifest, field="dependencies")
        lock = next((root / n for n in LOCK_FILES if (root / n).is_file()), None)
        dev = data.get("devDependencies") or {}
        missing = undeclared_requires(root, set(deps))
        if missing:
            package, where = next(iter(missing.items()))
            in_dev = " (it is in devDependencies, which are not bundled)" if package in dev else ""
            raise ProjectError(
                f'{where} requires {package!r}, which "dependencies" does not declare'
                f"{in_dev}: add it (`npm install --save {package}`) and build again",
                file=manifest,
                field="dependencies",
                details={"missing": sorted(missing)},
            )
        return Project(
            root=root,
            builder=self.name,
            language="node",
            name=name,
            version=str(version),
            entry_point=entry,
            settings=settings,
            manifest=manifest,
            details={"dependencies": deps, "lock_file": lock, "manifest": data},
        )

    @staticmethod
    def _entry(root: Path, data: dict[str, Any], settings: SosSettings, manifest: Path) -> str:
        candidates: list[tuple[str, str]] = []
        if settings.main:
            candidates.append((settings.main, "sos.main"))
        start = (data.get("scripts") or {}).get("start")
        if isinstance(start, str):
            words = shlex.split(start)
            if len(words) >= 2 and words[0] == "node":
                candidates.append((next(w for w in words[1:] if not w.startswith("-")), "start"))
        if isinstance(data.get("main"), str):
            candidates.append((data["main"], "main"))
        bin_field = data.get("bin")
        if isinstance(bin_field, str):
            candidates.append((bin_field, "bin"))
        elif isinstance(bin_field, dict) and len(bin_field) == 1:
            candidates.append((str(next(iter(bin_field.values()))), "bin"))
        if not candidates:
            raise ProjectError(
                'no entry point: set "main": "server.js" (the file that starts your server '
                'on process.env.PORT) or "scripts": {"start": "node server.js"}',
                file=manifest,
                field="main",
            )
        entry, field = candidates[0]
        path = (root / entry).resolve()
        if path.is_dir():
            path = path / "index.js"
        if not path.is_file() and path.with_suffix(".js").is_file():
            path = path.with_suffix(".js")
        if not path.is_file():
            raise ProjectError(
                f"the entry point {entry!r} does not exist; fix the path",
                file=manifest,
                field=field,
            )
        if root.resolve() not in path.parents:
            raise ProjectError(
                f"the entry point {entry!r} is outside the project", file=manifest, field=field
            )
        return path.relative_to(root.resolve()).as_posix()

    def lock(self, project: Project, ctx: BuildContext, *, frozen: bool) -> Project:
        deps: dict[str, Any] = project.details["dependencies"]
        lock: Path | None = project.details["lock_file"]
        if not deps:
            return project
        why = "missing" if lock is None else _stale(lock, deps)
        if why is None:
            return project
        target = lock or project.root / "package-lock.json"
        if frozen:
            problem = (
                f"package.json has dependencies and there is no {target.name}"
                if why == "missing"
                else f"{target.name} is out of date: {why}"
            )
            raise ProjectError(
                f"{problem}; --frozen builds only from a lock that matches. Run `sos build` "
                f"without --frozen (or `npm install --package-lock-only`) to write "
                f"{target.name}, commit it, and build again",
                file=target if why != "missing" else project.manifest,
                field="dependencies" if why == "missing" else None,
                details={"lock_file": str(target), "problem": why},
            )
        scratch = ctx.workdir / "npm-lock"
        scratch.mkdir()
        for name in ("package.json", ".npmrc", *LOCK_FILES):
            if (project.root / name).is_file():
                shutil.copy2(project.root / name, scratch / name)
        argv = [NPM.find(), "install", "--package-lock-only", *_NPM_QUIET]
        ctx.run(
            [*argv, *(["--offline"] if ctx.offline else [])],
            cwd=scratch,
            what=f"writing {target.name} with npm",
        )
        written = scratch / target.name
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copy2(written, tmp)
        tmp.replace(target)
        packages = _read_lock(target).get("packages", {})
        count = sum(1 for key, value in packages.items() if key and not value.get("dev"))
        ctx.warn(
            f"{'resolved' if why == 'missing' else 'updated'} package.json's dependencies "
            f"({', '.join(sorted(deps))}) into {target}, {count} "
            f"{'package' if count == 1 else 'packages'} in all; commit it, so that every "
            "build installs these exact versions"
        )
        return self.inspect(project.root, project.settings)

    def _node_version(self, ctx: BuildContext) -> str:
        import subprocess

        out = subprocess.run([NODE.find(), "--version"], capture_output=True, text=True, check=True)
        return out.stdout.strip().lstrip("v")

    def cache_inputs(self, project: Project, ctx: BuildContext) -> dict[str, Any]:
        return {
            "node": self._node_version(ctx),
            "ncc": os.environ.get("SOS_NCC_VERSION", NCC_VERSION),
        }

    def _ncc(self, ctx: BuildContext) -> Path:
        version = os.environ.get("SOS_NCC_VERSION", NCC_VERSION)
        npm = NPM.find()

        def fill(tmp: Path) -> None:
            if ctx.offline:
                raise BuildFailedError(
                    f"@vercel/ncc {version} is not in the build cache and --offline forbids "
                    "fetching it: build once with network access"
                )
            ctx.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(tmp),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    f"@vercel/ncc@{version}",
                ],
                cwd=tmp,
                what=f"installing @vercel/ncc {version} with npm",
            )

        entry, hit = ctx.cache.get_or_create("tools", f"ncc-{version}", fill)
        ctx.log.write(("reused" if hit else "installed") + f" ncc {version}: {entry}")
        return entry / "node_modules" / "@vercel" / "ncc" / "dist" / "ncc" / "cli.js"

    def _dependencies(self, project: Project, ctx: BuildContext, node_version: str) -> Path:
        deps: dict[str, Any] = project.details["dependencies"]
        lock: Path | None = project.details["lock_file"]
        data: dict[str, Any] = project.details["manifest"]
        manifest = {
            "name": data.get("name", "app"),
            "version": data.get("version", "0.0.0"),
            "private": True,
            "dependencies": deps,
        }
        for keep in ("overrides", "resolutions"):
            if keep in data:
                manifest[keep] = data[keep]
        lock_text = lock.read_text(encoding="utf-8") if lock else None
        key = stable_key("node-deps", node_version.split(".")[0], manifest, lock_text)
        npm = NPM.find()

        def fill(tmp: Path) -> None:
            (tmp / "package.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            (tmp / "node_modules").mkdir()
            if not deps:
                return
            common = ["--omit=dev", *_NPM_QUIET]
            if ctx.offline:
                common.append("--offline")
            if lock is not None:
                shutil.copy2(lock, tmp / lock.name)
                argv = [npm, "ci", *common]
            else:
                argv = [npm, "install", "--no-package-lock", *common]
            ctx.run(argv, cwd=tmp, what="installing dependencies with npm")

        entry, hit = ctx.cache.get_or_create("node-deps", key, fill)
        ctx.log.write(("reused" if hit else "installed") + f" dependencies: {entry}")
        return entry / "node_modules"

    def build(self, project: Project, ctx: BuildContext) -> BuiltArtifact:
        node = NODE.find()
        node_version = self._node_version(ctx)
        with ctx.step("Install ncc"):
            ncc = self._ncc(ctx)
        with ctx.step("Install dependencies"):
            modules = self._dependencies(project, ctx, node_version)
        with ctx.step("Bundle (ncc)"):
            app = ctx.workdir / "app"
            shutil.copytree(project.root, app, ignore=_ignore, symlinks=True)
            shutil.copytree(modules, app / "node_modules", copy_function=os.link, symlinks=True)
            out = ctx.workdir / "out"
            try:
                ctx.run(
                    [node, str(ncc), "build", project.entry_point, "-o", str(out)],
                    cwd=app,
                    what="bundling with ncc",
                    env={"NODE_ENV": "production"},
                )
            except BuildFailedError as exc:
                missing = _NOT_FOUND.search(exc.message)
                if missing:
                    raise ProjectError(
                        f"{project.entry_point} requires {missing.group(1)!r}, which "
                        '"dependencies" does not declare: add it (`npm install --save '
                        f"{missing.group(1)}`) and build again",
                        file=project.manifest,
                        field="dependencies",
                    ) from None
                raise
            esm = (out / "index.mjs").is_file()
            bundle = out / ("index.mjs" if esm else "index.js")
            extra_files = sorted(
                p.relative_to(out).as_posix()
                for p in out.rglob("*")
                if p.is_file()
                and p != bundle
                and not p.name.endswith((".d.ts", ".map"))
                and p.name != "package.json"
            )
            if not bundle.is_file():
                raise BuildFailedError("ncc produced no index.js or index.mjs", log=ctx.log.path)
            if extra_files:
                raise ProjectError(
                    "the bundle needs files beside it at run time, which a single-file "
                    f"artifact cannot carry: {', '.join(extra_files[:10])}. Drop the "
                    "dependency that reads them (or native .node modules), or inline them",
                    file=project.manifest,
                    details={"files": extra_files},
                )
            optional = sorted(set(_UNRESOLVED.findall(bundle.read_text(encoding="utf-8"))))
            if optional:
                ctx.log.write(
                    "left out, as dependencies require them only optionally: " + ", ".join(optional)
                )
            assert project.name and project.version
            target = ctx.workdir / f"{project.name}-{project.version}.js"
            bundle.replace(target)
        return BuiltArtifact(
            path=target,
            runtime_version=node_version.split(".")[0],
            entry_point=project.entry_point,
            name=project.name,
            version=project.version,
            extra={
                "node": node_version,
                "module": "esm" if esm else "commonjs",
                "optional_missing": optional,
                "bundler": f"@vercel/ncc {os.environ.get('SOS_NCC_VERSION', NCC_VERSION)}",
                **({"lock": _lock_record(lock)} if (lock := project.details["lock_file"]) else {}),
            },
        )
