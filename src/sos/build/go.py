"""Go artifacts: a static binary from ``go build`` (``CGO_ENABLED=0``), started as
``./ARTIFACT``.

go.mod has no version, so a Go project declares it in ``sos.toml`` (``version = "1.0.0"``;
``name`` defaults to the last element of the module path). The package to build is
``main = "./cmd/server"`` there, else the module root when it is ``package main``, else the
only ``cmd/*`` main package. Dependencies are go.mod's exact versions checked by go.sum;
the module cache or ``vendor/`` provides them (``GOPROXY=off`` with ``--offline``), so a
standard-library program builds with no network at all.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from sos.build.base import BuildContext, Builder, BuiltArtifact, Project, Tool
from sos.build.errors import BuildFailedError, ProjectError
from sos.build.registry import register_builder
from sos.build.settings import SosSettings

__all__ = ["GoBuilder"]

GO = Tool("go", "building Go artifacts", "apt-get install golang-go, or https://go.dev/dl")
_MODULE = re.compile(r"^module\s+(\S+)", re.MULTILINE)
_REQUIRE = re.compile(r"^require\s|^\s+[\w.\-/]+\s+v\d", re.MULTILINE)
_PACKAGE_MAIN = re.compile(r"^package\s+main\b", re.MULTILINE)
_MISSING = re.compile(
    r"(no required module provides package [^;\n]+|missing go\.sum entry[^\n]*|"
    r"cannot find module providing package [^\n]+|module lookup disabled by GOPROXY=off[^\n]*)"
)


def _is_main_package(folder: Path) -> bool:
    return any(
        _PACKAGE_MAIN.search(f.read_text(encoding="utf-8", errors="replace"))
        for f in folder.glob("*.go")
        if not f.name.endswith("_test.go")
    )


@register_builder
class GoBuilder(Builder):
    name = "go"
    language = "go"
    steps = ("Compile (go build)",)
    ignored_dirs = frozenset({"bin"})

    @classmethod
    def detect(cls, root: Path) -> str | None:
        return "go.mod" if (root / "go.mod").is_file() else None

    def inspect(self, root: Path, settings: SosSettings) -> Project:
        gomod = root / "go.mod"
        if not gomod.is_file():
            raise ProjectError("no go.mod: run `go mod init example.com/myservice`", file=root)
        text = gomod.read_text(encoding="utf-8")
        module = _MODULE.search(text)
        if not module:
            raise ProjectError("declares no module path", file=gomod, field="module")
        name = settings.name or module.group(1).rstrip("/").split("/")[-1]
        where = settings.source or root / "sos.toml"
        if not settings.version:
            raise ProjectError(
                "the version is missing: go.mod has none, so write it in sos.toml beside "
                'go.mod:\n\n    version = "1.0.0"\n',
                file=where,
                field="version",
            )
        if settings.main:
            package = settings.main if settings.main.startswith(".") else f"./{settings.main}"
            if not (root / package).is_dir() or not _is_main_package(root / package):
                raise ProjectError(
                    f"main = {settings.main!r} is not a directory with a `package main`",
                    file=where,
                    field="main",
                )
        elif _is_main_package(root):
            package = "."
        else:
            mains = sorted(
                d for d in (root / "cmd").glob("*") if d.is_dir() and _is_main_package(d)
            )
            if len(mains) != 1:
                found = ", ".join(f"./cmd/{d.name}" for d in mains)
                raise ProjectError(
                    "no entry point: "
                    + (f"several main packages ({found}); " if mains else "no `package main` ")
                    + 'found; say which to build in sos.toml: main = "./cmd/server"',
                    file=where,
                    field="main",
                )
            package = f"./cmd/{mains[0].name}"
        if (
            _REQUIRE.search(text)
            and not (root / "go.sum").is_file()
            and not (root / "vendor").is_dir()
        ):
            raise ProjectError(
                "go.mod requires modules but there is no go.sum to check them: run "
                "`go mod tidy` and keep go.sum next to go.mod",
                file=gomod,
                field="require",
            )
        return Project(
            root=root,
            builder=self.name,
            language="go",
            name=name,
            version=settings.version,
            entry_point=package,
            settings=settings,
            manifest=gomod,
            details={"module": module.group(1)},
        )

    def _go_env(self) -> dict[str, str]:
        out = subprocess.run(
            [GO.find(), "env", "GOVERSION", "GOOS", "GOARCH"],
            capture_output=True,
            text=True,
            check=True,
        )
        version, goos, goarch = out.stdout.split()
        return {"version": version.removeprefix("go"), "goos": goos, "goarch": goarch}

    def cache_inputs(self, project: Project, ctx: BuildContext) -> dict[str, Any]:
        return self._go_env()

    def build(self, project: Project, ctx: BuildContext) -> BuiltArtifact:
        go = GO.find()
        info = self._go_env()
        assert project.name and project.version
        target = ctx.workdir / f"{project.name}-{project.version}"
        env = {
            "CGO_ENABLED": "0",
            "GOFLAGS": "-mod=vendor" if (project.root / "vendor").is_dir() else "-mod=readonly",
            "GOCACHE": str(ctx.cache.root / "go-build"),
        }
        if ctx.offline:
            env["GOPROXY"] = "off"
        with ctx.step("Compile (go build)"):
            try:
                ctx.run(
                    [
                        go,
                        "build",
                        "-trimpath",
                        "-ldflags=-s -w -buildid=",
                        "-o",
                        str(target),
                        project.entry_point,
                    ],
                    cwd=project.root,
                    what="go build",
                    env=env,
                )
            except BuildFailedError as exc:
                missing = _MISSING.search(exc.message)
                if missing:
                    raise ProjectError(
                        f"{missing.group(1)}: the module is not in the module cache. Run "
                        "`go mod tidy` and `go mod download` where the module proxy is "
                        "reachable, or `go mod vendor` to keep the modules in the project",
                        file=project.manifest,
                        field="require",
                    ) from None
                raise
        target.chmod(0o755)
        return BuiltArtifact(
            path=target,
            runtime_version=".".join(info["version"].split(".")[:2]),
            entry_point=project.entry_point,
            name=project.name,
            version=project.version,
            extra={
                "go": info["version"],
                "os": info["goos"],
                "arch": info["goarch"],
                "static": True,
            },
        )
