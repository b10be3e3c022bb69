"""The ``Builder`` seam: one builder per ecosystem, found through ``sos.build.registry``.

A builder answers these questions:

- ``detect(root)``: is this a project of mine? (the manifest file that says so, or None)
- ``inspect(root, settings)``: what is it (name, version, entry point) and is it fit to be
  built? Every integrity problem is a ``ProjectError`` raised here, before any work.
- ``lock(project, ctx, frozen=...)``: resolve declared version ranges into a lock file
  beside the manifest (or refuse a missing or stale one when ``frozen``);
- ``build(project, ctx)``: make the artifact file in ``ctx.workdir`` with the ecosystem's
  own tool, resolving dependencies in isolation (``ctx.cache``) and logging to ``ctx.log``.

``sos.build.api.build`` runs them in order, then digests, records and caches the result.
"""

from __future__ import annotations

import abc
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from sos.build.cache import BuildCache
from sos.build.errors import BuildFailedError, ToolchainMissingError
from sos.build.log import BuildLog, BuildProgress, plain
from sos.build.settings import SosSettings
from sos.models import Language

__all__ = ["BuildContext", "Builder", "BuiltArtifact", "Project", "Tool"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tool:
    """A program a builder needs, and how to get it."""

    command: str
    purpose: str
    install: str

    def find(self) -> str:
        path = shutil.which(self.command)
        if path is None:
            raise ToolchainMissingError(self.command, self.purpose, self.install)
        return path


@dataclass
class Project:
    """What ``inspect`` learned about a project."""

    root: Path
    builder: str
    language: Language
    name: str | None
    #: None when only the build can tell (a version computed by the build backend)
    version: str | None
    entry_point: str
    settings: SosSettings
    manifest: Path
    #: builder-specific facts (dependency set, lock file, app interface...)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuiltArtifact:
    """What ``build`` produced, before it is digested and recorded."""

    path: Path
    runtime_version: str
    entry_point: str
    name: str
    version: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildContext:
    workdir: Path
    cache: BuildCache
    log: BuildLog
    progress: BuildProgress
    #: the Python interpreter Python artifacts are built for (the one that will run them)
    python: str
    #: do not reach package registries; use caches only
    offline: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    #: what the user should know about this build (a lock file written...), said once
    warnings: list[str] = field(default_factory=list)

    def warn(self, text: str) -> None:
        """Tell the user something about this build (``BuildResult.warnings``, the log)."""
        self.warnings.append(text)
        self.log.write(f"warning: {text}")
        logger.info("build warning: %s", text)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.log.section(title)
        self.progress.begin(title)
        yield
        self.progress.end(title)

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        what: str,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 1800,
    ) -> str:
        """Run a build tool, streaming its output to the log; return the output.

        Raises ``BuildFailedError`` (with the end of the output) when it fails.
        """
        full_env = dict(self.env)
        if env:
            full_env.update(env)
        self.log.write("$ " + " ".join(str(a) for a in argv) + f"    (in {cwd})")
        lines: list[str] = []
        try:
            proc = subprocess.Popen(
                [str(a) for a in argv],
                cwd=cwd,
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
            )
        except FileNotFoundError as exc:
            raise BuildFailedError(f"{what}: cannot start {argv[0]}: {exc}") from None
        assert proc.stdout is not None
        try:
            for line in map(plain, proc.stdout):
                lines.append(line)
                self.log.raw(line)
                self.progress.output(line.rstrip())
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BuildFailedError(
                f"{what} did not finish within {timeout:.0f} s", log=self.log.path
            ) from None
        output = "".join(lines)
        if code != 0:
            raise BuildFailedError(
                f"{what} failed (exit code {code})", log=self.log.path, output=output
            )
        return output


class Builder(abc.ABC):
    """Makes artifacts of one ecosystem. Subclasses register with ``register_builder``."""

    #: registry name, as in ``sos build --type NAME``
    name: ClassVar[str]
    language: ClassVar[Language]
    #: the steps ``build`` goes through, for progress display
    steps: ClassVar[tuple[str, ...]] = ()
    #: directories that are build output of this ecosystem, not source
    ignored_dirs: ClassVar[frozenset[str]] = frozenset()
    #: the lock files it reads beside the manifest, and writes in ``lock`` (a remote build
    #: reports the one it installed from, and the laptop writes one it resolved)
    lock_files: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abc.abstractmethod
    def detect(cls, root: Path) -> str | None:
        """The file that marks ``root`` as a project of this ecosystem, or None."""

    @abc.abstractmethod
    def inspect(self, root: Path, settings: SosSettings) -> Project:
        """Read the project's metadata and check it is fit to build."""

    @abc.abstractmethod
    def build(self, project: Project, ctx: BuildContext) -> BuiltArtifact:
        """Make the artifact file inside ``ctx.workdir``."""

    def lock(self, project: Project, ctx: BuildContext, *, frozen: bool) -> Project:
        """Make sure the project's dependencies are locked before anything is built.

        A builder whose ecosystem resolves version ranges writes the resolved set to a
        lock file beside the manifest (one of ``lock_files``; telling the user with
        ``ctx.warn``, in words that name it as ``into PATH``) and returns the
        project as inspected again; ``frozen`` builds refuse a missing or stale lock with a
        ``ProjectError`` instead. The default: nothing to lock.
        """
        return project

    def cache_inputs(self, project: Project, ctx: BuildContext) -> dict[str, Any]:
        """What besides the source decides the artifact's bytes (toolchain versions...)."""
        return {}
