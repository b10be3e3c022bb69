"""``S3ArtifactStore``: blobs in an S3-compatible object store (AWS S3, MinIO, Ceph...).

Objects are ``<prefix>/sha256/<hex>``. An upload is spooled to a local file while it is
hashed and counted (so the size limit and the digest are checked before anything reaches
the bucket), then sent with ``fput_object`` (multipart for large files) under its digest.
Needs ``pip install flight-sos[s3]`` (the MinIO client, which speaks plain S3).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urlparse

from sos.artifacts.base import ArtifactStore, FileUpload, StoredBlob, Upload
from sos.artifacts.safety import check_digest
from sos.errors import NotFoundError, ServerUnavailableError

__all__ = ["S3ArtifactStore"]

logger = logging.getLogger(__name__)


class _S3Upload(FileUpload):
    def __init__(self, store: S3ArtifactStore, max_size: int | None) -> None:
        super().__init__(max_size, store.staging_dir)
        self._store = store

    def _commit(self, digest: str) -> StoredBlob:
        self._finish()
        try:
            if self._store.exists(digest):
                return StoredBlob(digest, self.size, created=False)
            self._store._call(
                self._store.client.fput_object,
                self._store.bucket,
                self._store.key(digest),
                str(self.path),
                content_type="application/octet-stream",
            )
            logger.info("stored artifact blob %s (%d bytes) in s3", digest, self.size)
            return StoredBlob(digest, self.size, created=True)
        finally:
            self.path.unlink(missing_ok=True)


class _Body:
    """A streamed object body as a binary file."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._response.read(None if size < 0 else size)
        return data

    def close(self) -> None:
        self._response.close()
        self._response.release_conn()

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class S3ArtifactStore(ArtifactStore):
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str | None = None,
        staging_dir: Path | None = None,
        create_bucket: bool = True,
    ) -> None:
        try:
            from minio import Minio
        except ImportError:
            raise ServerUnavailableError(
                "the S3 artifact store needs the MinIO client: pip install 'flight-sos[s3]'"
            ) from None
        url = urlparse(endpoint_url or "https://s3.amazonaws.com")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.staging_dir = Path(staging_dir or tempfile.gettempdir())
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self.client = Minio(
            url.netloc,
            access_key=access_key or os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_key=secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY"),
            region=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            secure=url.scheme == "https",
        )
        if create_bucket and not self._call(self.client.bucket_exists, bucket):
            self._call(self.client.make_bucket, bucket)

    def __repr__(self) -> str:
        return f"S3ArtifactStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def key(self, digest: str) -> str:
        hexdigest = check_digest(digest).removeprefix("sha256:")
        return f"{self.prefix}/sha256/{hexdigest}" if self.prefix else f"sha256/{hexdigest}"

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        from minio.error import MinioException

        try:
            return func(*args, **kwargs)
        except MinioException:
            raise
        except OSError as exc:  # connection refused, DNS, TLS...
            raise ServerUnavailableError(
                f"the S3 artifact store (bucket {self.bucket!r}) cannot be reached: {exc}"
            ) from None

    def begin_upload(self, *, max_size: int | None = None) -> Upload:
        return _S3Upload(self, max_size)

    def _missing(self, exc: Exception) -> bool:
        return getattr(exc, "code", None) in {"NoSuchKey", "NotFound", "NoSuchObject"}

    def open(self, digest: str) -> BinaryIO:
        from minio.error import S3Error

        try:
            response = self._call(self.client.get_object, self.bucket, self.key(digest))
        except S3Error as exc:
            if self._missing(exc):
                raise NotFoundError(f"no artifact with digest {digest} in the store") from None
            raise
        return cast(BinaryIO, _Body(response))

    def exists(self, digest: str) -> bool:
        from minio.error import S3Error

        try:
            self._call(self.client.stat_object, self.bucket, self.key(digest))
        except S3Error as exc:
            if self._missing(exc):
                return False
            raise
        return True

    def delete(self, digest: str) -> bool:
        if not self.exists(digest):
            return False
        self._call(self.client.remove_object, self.bucket, self.key(digest))
        return True

    def digests(self) -> Iterator[str]:
        base = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        names = sorted(
            obj.object_name
            for obj in self._call(
                self.client.list_objects, self.bucket, prefix=base, recursive=True
            )
        )
        for name in names:
            tail = name.rsplit("/", 1)[-1]
            if len(tail) == 64:
                yield f"sha256:{tail}"
