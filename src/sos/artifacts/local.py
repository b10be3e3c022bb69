"""``LocalArtifactStore``: blobs as read-only files under a directory.

Layout (``root`` is usually ``<server data dir>/artifacts``)::

    root/blobs/sha256/ab/abcdef...   one file per digest, mode 0444
    root/tmp/upload-*                bytes being uploaded; renamed into place on commit

A commit is an atomic rename within one file system, so readers never see a partial blob
and a crash leaves at most a stray file in ``tmp/`` (removed on the next start).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sos.artifacts.base import ArtifactStore, FileUpload, StoredBlob, Upload
from sos.artifacts.safety import check_digest
from sos.errors import NotFoundError

__all__ = ["LocalArtifactStore"]

logger = logging.getLogger(__name__)


class _LocalUpload(FileUpload):
    def __init__(self, store: LocalArtifactStore, max_size: int | None) -> None:
        super().__init__(max_size, store.root / "tmp")
        self._store = store

    def _commit(self, digest: str) -> StoredBlob:
        self._finish()
        target = self._store._blob_path(digest)
        if target.exists():
            self.path.unlink(missing_ok=True)
            return StoredBlob(digest, self.size, created=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path.chmod(0o444)
        os.replace(self.path, target)
        logger.info("stored artifact blob %s (%d bytes)", digest, self.size)
        return StoredBlob(digest, self.size, created=True)


class LocalArtifactStore(ArtifactStore):
    """Content-addressed files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalArtifactStore({str(self.root)!r})"

    def _blob_path(self, digest: str) -> Path:
        hexdigest = check_digest(digest).removeprefix("sha256:")
        return self.root / "blobs" / "sha256" / hexdigest[:2] / hexdigest

    def clean_tmp(self) -> int:
        """Remove uploads a crash left behind. Call at start-up, before uploads begin."""
        removed = 0
        for stray in (self.root / "tmp").glob("upload-*"):
            stray.unlink(missing_ok=True)
            removed += 1
        return removed

    def begin_upload(self, *, max_size: int | None = None) -> Upload:
        return _LocalUpload(self, max_size)

    def open(self, digest: str) -> BinaryIO:
        path = self._blob_path(digest)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"no artifact with digest {digest} in the store") from None

    def exists(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def delete(self, digest: str) -> bool:
        path = self._blob_path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def digests(self) -> Iterator[str]:
        base = self.root / "blobs" / "sha256"
        for path in sorted(base.glob("??/*")):
            if len(path.name) == 64:
                yield f"sha256:{path.name}"

    def local_path(self, digest: str) -> Path | None:
        path = self._blob_path(digest)
        return path if path.is_file() else None
