"""Name and version on top of a blob store: the immutability rule and the local catalog.

The rule, the same on the server and on a developer's machine: a name+version names one
digest forever. Storing the same bytes again is a no-op; other bytes are a conflict.

``LocalArtifactCatalog`` is what ``sos build`` records builds in (``$SOS_HOME``, default
``~/.local/share/sos``): blobs in a ``LocalArtifactStore`` and one JSON metadata file per
name+version. The server keeps the same metadata in its SQL store instead. Locally the rule
binds once a version is pushed; before that a rebuild replaces the earlier local build.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
from pathlib import Path

from sos import config
from sos.artifacts.local import LocalArtifactStore
from sos.artifacts.safety import check_name, check_version
from sos.errors import ConflictError, NotFoundError
from sos.models import ArtifactMetadata

__all__ = [
    "LocalArtifactCatalog",
    "check_immutable",
    "default_data_dir",
    "is_dirty_version",
]

logger = logging.getLogger(__name__)

_DIRTY = re.compile(r"(\+|[.-]dirty\b|\.d\d{8}$)", re.IGNORECASE)


#: where the catalog lives: ``$SOS_HOME``, else ``$XDG_DATA_HOME/sos``, else
#: ``~/.local/share/sos`` (``sos.config.default_data_dir``, read with ``SOS_HOME``)
default_data_dir = functools.partial(config.default_data_dir, variable="SOS_HOME")


def is_dirty_version(version: str) -> bool:
    """A local or dirty version (``1.2.0+dirty``, ``1.2.0+g1a2b3c.d20240102``): one built
    from work that has no release of its own, and so likely to be rebuilt with other bytes."""
    return bool(_DIRTY.search(version))


def check_immutable(
    existing: ArtifactMetadata | None, digest: str, *, hint: str | None = None
) -> bool:
    """True when ``existing`` already holds ``digest`` (storing again is a no-op), False
    when there is no ``existing``; ``ConflictError`` when it holds other bytes."""
    if existing is None:
        return False
    if existing.digest == digest:
        return True
    name, version = existing.name, existing.version
    if is_dirty_version(version):
        why = (
            f"{version!r} is a local (dirty) version, built from work without a release of "
            "its own, and a build of it with other content already exists"
        )
        todo = "commit your changes and give the release a new version, then build again"
    else:
        why = "versions are immutable, so that a revision always runs the bytes it was made from"
        todo = "bump the version (for example in pyproject.toml or package.json) and build again"
    message = (
        f"artifact {name} {version} already exists with other content "
        f"({existing.digest}, created {existing.created_at:%Y-%m-%d %H:%M} by "
        f"{existing.created_by}); this one is {digest}. {why[0].upper()}{why[1:]}: {todo}"
    )
    if hint:
        message += f", {hint}"
    raise ConflictError(
        message + ".",
        details={"name": name, "version": version, "existing": existing.digest, "new": digest},
    )


class LocalArtifactCatalog:
    """Artifacts built on this machine, by name and version."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_data_dir() / "artifacts"
        self.store = LocalArtifactStore(self.root / "store")
        self._index = self.root / "index"
        self._index.mkdir(parents=True, exist_ok=True)

    def _meta_path(self, name: str, version: str) -> Path:
        return self._index / check_name(name) / f"{check_version(version)}.json"

    def get(self, name: str, version: str) -> ArtifactMetadata | None:
        path = self._meta_path(name, version)
        if not path.is_file():
            return None
        return ArtifactMetadata.model_validate_json(path.read_text(encoding="utf-8"))

    def require(self, name: str, version: str) -> ArtifactMetadata:
        found = self.get(name, version)
        if found is None:
            known = [m.version for m in self.list(name)]
            hint = f"known versions: {', '.join(known)}" if known else "build it with `sos build`"
            raise NotFoundError(f"no local artifact {name} {version}; {hint}")
        return found

    def list(self, name: str | None = None) -> list[ArtifactMetadata]:
        dirs = [self._index / check_name(name)] if name else sorted(self._index.iterdir())
        found: list[ArtifactMetadata] = []
        for folder in dirs:
            if not folder.is_dir():
                continue
            for path in folder.glob("*.json"):
                found.append(ArtifactMetadata.model_validate_json(path.read_text("utf-8")))
        found.sort(key=lambda m: (m.name, m.created_at))
        return found

    def path(self, metadata: ArtifactMetadata) -> Path:
        """Where the bytes of ``metadata`` are on this machine."""
        path = self.store.local_path(metadata.digest)
        if path is None:
            raise NotFoundError(
                f"the local store lost the bytes of {metadata.name} {metadata.version} "
                f"({metadata.digest}); build it again"
            )
        return path

    def _write(self, metadata: ArtifactMetadata) -> None:
        target = self._meta_path(metadata.name, metadata.version)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".meta-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(metadata.model_dump_json(indent=2))
        os.replace(tmp, target)

    def add(
        self, path: Path, metadata: ArtifactMetadata
    ) -> tuple[ArtifactMetadata, bool, ArtifactMetadata | None]:
        """Record the artifact file ``path``: returns what is recorded, whether it is new,
        and the earlier local build it replaced, if any.

        The same bytes again are a no-op. Other bytes under a version that was pushed are a
        ``ConflictError`` (the server keeps the pushed bytes forever); a local build that
        was never pushed is replaced, as a developer rebuilds while working.
        """
        existing = self.get(metadata.name, metadata.version)
        if existing is not None and existing.pushed_at is not None:
            where = existing.extra.get("pushed_to", "the server")
            check_immutable(existing, metadata.digest, hint=f"it was pushed to {where}")
        if existing is not None and existing.digest == metadata.digest:
            return existing, False, None
        blob = self.store.put_file(path, expected_digest=metadata.digest)
        self._write(metadata)
        replaced = existing
        if replaced is not None:
            logger.info(
                "replaced the local build %s of %s %s (never pushed)",
                replaced.digest,
                metadata.name,
                metadata.version,
            )
            if not any(m.digest == replaced.digest for m in self.list()):
                self.store.delete(replaced.digest)
        logger.info("recorded %s %s (%s)", metadata.name, metadata.version, blob.digest)
        return metadata, True, replaced

    def mark_pushed(self, pushed: ArtifactMetadata, server: str) -> None:
        """Remember that ``pushed`` is on ``server``: its version is fixed from now on."""
        local = self.get(pushed.name, pushed.version)
        if local is None or local.digest != pushed.digest:
            return
        extra = {**local.extra, "pushed_to": server}
        self._write(
            local.model_copy(
                update={
                    "pushed_by": pushed.pushed_by,
                    "pushed_at": pushed.pushed_at,
                    "extra": extra,
                }
            )
        )
