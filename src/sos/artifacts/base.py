"""The ``ArtifactStore`` seam: immutable blobs addressed by their sha256 digest.

A store keeps bytes only; what the bytes are (name, version, language) is metadata that
lives beside it (the server's SQL store, or the local catalog of ``sos build``).

Writing goes through an :class:`Upload`, so that a caller can feed bytes as they arrive
(an HTTP request body, a file) without holding the whole artifact in memory::

    upload = store.begin_upload(max_size=limit)
    try:
        for chunk in chunks:
            upload.write(chunk)          # PayloadTooLargeError as soon as the limit is passed
        blob = upload.commit(expected)   # ValidationError if the digest differs
    finally:
        upload.close()                   # drops the staged bytes unless committed

``MemoryArtifactStore`` is the in-memory fake beside the seam, for tests.
"""

from __future__ import annotations

import abc
import hashlib
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sos.artifacts.safety import check_digest
from sos.errors import NotFoundError, PayloadTooLargeError, ValidationError

__all__ = [
    "CHUNK_SIZE",
    "ArtifactStore",
    "FileUpload",
    "MemoryArtifactStore",
    "StoredBlob",
    "Upload",
    "file_digest",
    "human_size",
]

#: bytes read or written at a time when streaming
CHUNK_SIZE = 1024 * 1024


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file, read in chunks."""
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            sha.update(chunk)
    return f"sha256:{sha.hexdigest()}"


def human_size(size: int) -> str:
    """``3.3 MiB``: a byte count as people read it."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - loop always returns


@dataclass(frozen=True)
class StoredBlob:
    """What a store holds for one digest after a write."""

    digest: str
    size: int
    #: False when the store already held these bytes (a no-op write)
    created: bool


class Upload(abc.ABC):
    """Bytes being written to a store: hashed and counted as they arrive."""

    def __init__(self, max_size: int | None) -> None:
        self.max_size = max_size
        self.size = 0
        self._sha = hashlib.sha256()
        self._done = False

    @property
    def digest(self) -> str:
        return f"sha256:{self._sha.hexdigest()}"

    def write(self, chunk: bytes) -> None:
        """Add ``chunk``; raises ``PayloadTooLargeError`` once the size limit is passed."""
        if self._done:
            raise RuntimeError("upload already committed or closed")
        self.size += len(chunk)
        if self.max_size is not None and self.size > self.max_size:
            self.close()
            raise PayloadTooLargeError(
                f"the artifact is larger than the limit of {human_size(self.max_size)} "
                f"({self.max_size} bytes); make it smaller, or ask the operator to raise "
                "the server's artifact size limit (SOS_MAX_ARTIFACT_BYTES)",
                details={"limit": self.max_size},
            )
        self._sha.update(chunk)
        self._write(chunk)

    def commit(self, expected_digest: str | None = None) -> StoredBlob:
        """Keep the bytes under their digest. With ``expected_digest``, refuse other bytes."""
        if self._done:
            raise RuntimeError("upload already committed or closed")
        digest = self.digest
        if expected_digest is not None and expected_digest != digest:
            self.close()
            raise ValidationError(
                f"the uploaded bytes have digest {digest}, not the expected {expected_digest}: "
                "the file changed or was damaged on the way; upload it again",
                details={"expected": expected_digest, "actual": digest},
            )
        blob = self._commit(digest)
        self._done = True
        return blob

    def close(self) -> None:
        """Drop the staged bytes if not committed. Safe to call more than once."""
        if not self._done:
            self._done = True
            self._abort()

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def _write(self, chunk: bytes) -> None: ...

    @abc.abstractmethod
    def _commit(self, digest: str) -> StoredBlob: ...

    @abc.abstractmethod
    def _abort(self) -> None: ...


class FileUpload(Upload):
    """An upload staged in a temporary file of ``directory`` (local disk, or before it
    is sent to an object store); subclasses implement ``_commit`` with ``self.path``."""

    def __init__(self, max_size: int | None, directory: Path) -> None:
        super().__init__(max_size)
        fd, name = tempfile.mkstemp(prefix="upload-", dir=directory)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")

    def _write(self, chunk: bytes) -> None:
        self._file.write(chunk)

    def _finish(self) -> None:
        """Flush the staged bytes to disk and close the file."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def _abort(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class ArtifactStore(abc.ABC):
    """Immutable blobs by ``sha256:<hex>`` digest. Implementations must be thread-safe."""

    @abc.abstractmethod
    def begin_upload(self, *, max_size: int | None = None) -> Upload:
        """Start writing a new blob."""

    @abc.abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """A readable binary file of the blob; ``NotFoundError`` if absent."""

    @abc.abstractmethod
    def exists(self, digest: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, digest: str) -> bool:
        """Remove a blob; False if there was none."""

    @abc.abstractmethod
    def digests(self) -> Iterator[str]:
        """Every digest the store holds."""

    def local_path(self, digest: str) -> Path | None:
        """A path on this machine holding the blob, when the store has one (else None)."""
        return None

    # ------------------------------------------------------------------ conveniences

    def put(
        self,
        data: Iterable[bytes] | BinaryIO,
        *,
        expected_digest: str | None = None,
        max_size: int | None = None,
    ) -> StoredBlob:
        """Write a stream of chunks or a binary file, checking size and digest."""
        if expected_digest is not None:
            check_digest(expected_digest)
        chunks: Iterable[bytes]
        if isinstance(data, bytes | bytearray):
            chunks = [bytes(data)]
        elif hasattr(data, "read"):
            reader: BinaryIO = data  # type: ignore[assignment]
            chunks = iter(lambda: reader.read(CHUNK_SIZE), b"")
        else:
            chunks = data
        with self.begin_upload(max_size=max_size) as upload:
            for chunk in chunks:
                upload.write(chunk)
            return upload.commit(expected_digest)

    def put_file(
        self, path: Path, *, expected_digest: str | None = None, max_size: int | None = None
    ) -> StoredBlob:
        with path.open("rb") as handle:
            return self.put(handle, expected_digest=expected_digest, max_size=max_size)

    def get(self, digest: str, dest: Path) -> Path:
        """Copy the blob to ``dest`` (atomically: a partial file is never left there)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.partial")
        with self.open(digest) as source, partial.open("wb") as target:
            shutil.copyfileobj(source, target, CHUNK_SIZE)
        partial.replace(dest)
        return dest

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as handle:
            return handle.read()


# --------------------------------------------------------------------------- in-memory fake


class _MemoryUpload(Upload):
    def __init__(self, store: MemoryArtifactStore, max_size: int | None) -> None:
        super().__init__(max_size)
        self._store = store
        self._buffer = io.BytesIO()

    def _write(self, chunk: bytes) -> None:
        self._buffer.write(chunk)

    def _commit(self, digest: str) -> StoredBlob:
        with self._store._lock:
            created = digest not in self._store._blobs
            if created:
                self._store._blobs[digest] = self._buffer.getvalue()
        return StoredBlob(digest, self.size, created)

    def _abort(self) -> None:
        self._buffer = io.BytesIO()


class MemoryArtifactStore(ArtifactStore):
    """Blobs in a dict: the fake used by tests of code that needs a store."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def begin_upload(self, *, max_size: int | None = None) -> Upload:
        return _MemoryUpload(self, max_size)

    def open(self, digest: str) -> BinaryIO:
        check_digest(digest)
        with self._lock:
            data = self._blobs.get(digest)
        if data is None:
            raise NotFoundError(f"no artifact with digest {digest} in the store")
        return io.BytesIO(data)

    def exists(self, digest: str) -> bool:
        check_digest(digest)
        with self._lock:
            return digest in self._blobs

    def delete(self, digest: str) -> bool:
        check_digest(digest)
        with self._lock:
            return self._blobs.pop(digest, None) is not None

    def digests(self) -> Iterator[str]:
        with self._lock:
            return iter(sorted(self._blobs))
