"""``build()``: from a project directory to a recorded artifact file, the high layer under
``sos build``.

1. detect the project type and read its SOS settings;
2. ``inspect``: name, version, entry point, and every integrity check; then ``lock``:
   version ranges are resolved into a lock file beside the manifest (``frozen``: a
   missing or stale lock is refused);
3. reuse the artifact of an identical earlier build (same source fingerprint, same
   toolchain), or let the builder make it in a scratch directory;
4. digest it, check its archive entries, record it in the local catalog (where a version
   is immutable), and write ``OUT/NAME-VERSION.EXT`` with its metadata beside it
   (``OUT/NAME-VERSION.EXT.json``). The build log is ``PROJECT/.sos/build.log``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sos.artifacts.base import file_digest
from sos.artifacts.catalog import LocalArtifactCatalog
from sos.artifacts.safety import check_name, check_version, check_zip_entries, is_zip
from sos.build.base import BuildContext, BuiltArtifact, Project
from sos.build.cache import BuildCache, fingerprint, stable_key
from sos.build.detect import detect_builder
from sos.build.errors import BuildFailedError, ProjectError
from sos.build.log import BuildLog, BuildProgress, NullProgress
from sos.build.settings import load_settings
from sos.errors import ValidationError
from sos.launch import ARTIFACT_SUFFIX
from sos.models import ArtifactMetadata

__all__ = ["BuildResult", "build", "inspect_project", "metadata_path", "read_metadata"]

logger = logging.getLogger(__name__)

INSPECT_STEP = "Inspect the project"
RECORD_STEP = "Record the artifact"
#: bump when a change to the builders must invalidate cached artifacts
CACHE_FORMAT = 1


@dataclass(frozen=True)
class BuildResult:
    metadata: ArtifactMetadata
    #: the artifact file in the output directory
    path: Path
    #: its metadata, as JSON, beside it (what ``sos push`` reads)
    metadata_file: Path
    log: Path
    #: True when an identical earlier build was reused
    cached: bool
    #: False when the local catalog already held these exact bytes
    recorded: bool
    #: the earlier local build of this version (never pushed) that this one replaced
    replaced: ArtifactMetadata | None = None
    #: what the user should know (a lock file written: commit it), said once
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = self.metadata.model_dump(mode="json")
        data.update(
            path=str(self.path),
            metadata_file=str(self.metadata_file),
            log=str(self.log),
            cached=self.cached,
            warnings=list(self.warnings),
        )
        return data


def metadata_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def read_metadata(artifact: Path) -> ArtifactMetadata:
    """The metadata ``sos build`` wrote beside ``artifact``."""
    meta = metadata_path(artifact)
    if not meta.is_file():
        raise ValidationError(
            f"{artifact} has no metadata beside it ({meta.name}); push artifacts made by "
            "`sos build`, which writes both"
        )
    try:
        return ArtifactMetadata.model_validate_json(meta.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValidationError(f"{meta} is not valid artifact metadata: {exc}") from None


def _default_user() -> str:
    try:
        return os.environ.get("SOS_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _check_identity(project: Project, name: str, version: str) -> None:
    where = project.settings.source or project.manifest
    try:
        check_name(name)
    except ValidationError as exc:
        raise ProjectError(exc.message, file=where, field="name") from None
    try:
        check_version(version)
    except ValidationError as exc:
        raise ProjectError(exc.message, file=where, field="version") from None


def inspect_project(source: Path, *, type: str | None = None) -> Project:
    """Detect and inspect a project without building it (all integrity checks)."""
    root = Path(source).resolve()
    settings = load_settings(root) if root.is_dir() else None
    if settings is None:
        raise ProjectError(f"{root} is not a directory; give the project's directory")
    builder = detect_builder(root, settings, type)()
    project = builder.inspect(root, settings)
    if project.name and project.version:
        _check_identity(project, project.name, project.version)
    return project


def _log_path(root: Path, cache: BuildCache) -> Path:
    folder = root / ".sos"
    try:
        folder.mkdir(exist_ok=True)
        probe = folder / ".write-test"
        probe.touch()
        probe.unlink()
        return folder / "build.log"
    except OSError:
        return cache.root / "logs" / f"{root.name}.build.log"


def build(
    source: Path | str,
    *,
    type: str | None = None,
    out: Path | str | None = None,
    python: str | None = None,
    offline: bool = False,
    frozen: bool = False,
    cache: BuildCache | None = None,
    catalog: LocalArtifactCatalog | None = None,
    progress: BuildProgress | None = None,
    clock: Callable[[], datetime] | None = None,
    created_by: str | None = None,
    use_cache: bool = True,
) -> BuildResult:
    """Build the project in ``source`` into an artifact; see the module docstring.

    ``frozen`` (for CI): build only from the lock files as they are; a project whose
    dependencies need a lock that is missing or stale is refused (``ProjectError``).
    """
    clock = clock or (lambda: datetime.now(UTC))
    progress = progress or NullProgress()
    cache = cache or BuildCache()
    catalog = catalog or LocalArtifactCatalog()
    root = Path(source).resolve()
    if not root.is_dir():
        raise ProjectError(f"{root} is not a directory; give the project's directory")
    settings = load_settings(root)
    builder = detect_builder(root, settings, type)()
    progress.plan([INSPECT_STEP, *builder.steps, RECORD_STEP])
    log = BuildLog(_log_path(root, cache), clock)
    (cache.root / "work").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="build-", dir=cache.root / "work"))
    ctx = BuildContext(
        workdir=workdir,
        cache=cache,
        log=log,
        progress=progress,
        python=python or sys.executable,
        offline=offline,
    )
    try:
        log.write(f"sos build {root} (builder: {builder.name})")
        with ctx.step(INSPECT_STEP):
            project = builder.inspect(root, settings)
            if project.name and project.version:
                _check_identity(project, project.name, project.version)
            project = builder.lock(project, ctx, frozen=frozen)
            log.write(f"project {project.name or '?'} {project.version or '?'}")
            source_fingerprint = fingerprint(root, builder.ignored_dirs)
            key = stable_key(
                CACHE_FORMAT,
                builder.name,
                source_fingerprint,
                builder.cache_inputs(project, ctx),
            )
        cached = None
        if use_cache:
            entry = cache.lookup("artifacts", key)
            if entry is not None and (entry / "built.json").is_file():
                data = json.loads((entry / "built.json").read_text(encoding="utf-8"))
                data["path"] = entry / data["path"]
                cached = BuiltArtifact(**data)
                log.write(f"source unchanged since an earlier build: reusing {entry}")
                for step in builder.steps:
                    progress.begin(step)
                    progress.end(step, "cached")
        built = cached or builder.build(project, ctx)
        _check_identity(project, built.name, built.version)
        if cached is None and use_cache:
            _remember(cache, key, built)
        with ctx.step(RECORD_STEP):
            built.extra["provenance"] = _provenance(built, ctx, source_fingerprint, log)
            result = _record(project, built, out, catalog, clock, created_by, log)
        log.write(f"done: {result.path} ({result.metadata.digest})")
        return BuildResult(
            metadata=result.metadata,
            path=result.path,
            metadata_file=result.metadata_file,
            log=log.path,
            cached=cached is not None,
            recorded=result.recorded,
            replaced=result.replaced,
            warnings=tuple(ctx.warnings),
        )
    except BuildFailedError as exc:
        if exc.log is None:
            exc.message += f"\n(full build log: {log.path})"
            exc.args = (exc.message,)
        log.write(f"FAILED: {exc.message}")
        raise
    except Exception as exc:
        log.write(f"FAILED: {exc}")
        raise
    finally:
        log.close()
        if not os.environ.get("SOS_KEEP_BUILD_DIR"):
            shutil.rmtree(workdir, ignore_errors=True)


def _provenance(
    built: BuiltArtifact, ctx: BuildContext, source_fingerprint: str, log: BuildLog
) -> dict[str, object]:
    """Where an artifact came from: its source, its builder, the packages it holds and
    the digest of its build log (up to this point). A remote build replaces ``builder``
    and adds the uploaded source's digest (``sos.server.builds``)."""
    packages = built.extra.get("packages") or []
    return {
        "source_fingerprint": "sha256:" + source_fingerprint.removeprefix("sha256:"),
        "builder": {
            "kind": "local",
            "host": f"{platform.system().lower()}-{platform.machine()}",
            "interpreter": ctx.python if built.runtime_version else "",
            "runtime_version": built.runtime_version,
        },
        "dependencies": packages if isinstance(packages, list) else [],
        "log_digest": "sha256:" + hashlib.sha256(log.path.read_bytes()).hexdigest(),
    }


def _remember(cache: BuildCache, key: str, built: BuiltArtifact) -> None:
    def fill(tmp: Path) -> None:
        shutil.copy2(built.path, tmp / built.path.name)
        data = {
            "path": built.path.name,
            "runtime_version": built.runtime_version,
            "entry_point": built.entry_point,
            "name": built.name,
            "version": built.version,
            "extra": built.extra,
        }
        (tmp / "built.json").write_text(json.dumps(data, indent=2), encoding="utf-8")

    cache.get_or_create("artifacts", key, fill)


@dataclass(frozen=True)
class _Recorded:
    metadata: ArtifactMetadata
    path: Path
    metadata_file: Path
    recorded: bool
    replaced: ArtifactMetadata | None


def _record(
    project: Project,
    built: BuiltArtifact,
    out: Path | str | None,
    catalog: LocalArtifactCatalog,
    clock: Callable[[], datetime],
    created_by: str | None,
    log: BuildLog,
) -> _Recorded:
    if is_zip(built.path):
        check_zip_entries(built.path, what=f"the built artifact {built.path.name}")
    filename = f"{built.name}-{built.version}{ARTIFACT_SUFFIX[project.language]}"
    metadata = ArtifactMetadata(
        name=built.name,
        version=built.version,
        language=project.language,
        runtime_version=built.runtime_version,
        entry_point=built.entry_point,
        digest=file_digest(built.path),
        size=built.path.stat().st_size,
        created_by=created_by or _default_user(),
        created_at=clock(),
        filename=filename,
        extra={**built.extra, "builder": project.builder},
    )
    recorded_meta, is_new, replaced = catalog.add(built.path, metadata)
    if replaced is not None:
        log.write(
            f"replaced the earlier local build of {metadata.name} {metadata.version} "
            f"({replaced.digest}, never pushed)"
        )
    out_dir = Path(out).resolve() if out is not None else project.root / "dist"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / filename
    partial = out_dir / f".{filename}.partial"
    shutil.copy2(built.path, partial)
    if project.language in ("go",):
        partial.chmod(0o755)
    partial.replace(target)
    meta_file = metadata_path(target)
    meta_file.write_text(recorded_meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
    log.write(
        f"artifact {recorded_meta.name} {recorded_meta.version}: {target} "
        f"({recorded_meta.size} bytes, {recorded_meta.digest})"
        + ("" if is_new else " - already in the local catalog with these bytes")
    )
    return _Recorded(recorded_meta, target, meta_file, is_new, replaced)
