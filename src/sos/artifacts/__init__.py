"""Artifact storage: immutable blobs by sha256 digest, behind the ``ArtifactStore`` seam.

- ``LocalArtifactStore``: files under a directory (the server's data dir by default);
- ``S3ArtifactStore``: an S3-compatible object store (``pip install flight-sos[s3]``);
- ``MemoryArtifactStore``: in memory, for tests.

``check_immutable`` is the rule every catalog applies (a name+version names one digest);
``LocalArtifactCatalog`` records ``sos build`` output on a developer's machine.
"""

from sos.artifacts.base import (
    CHUNK_SIZE,
    ArtifactStore,
    FileUpload,
    MemoryArtifactStore,
    StoredBlob,
    Upload,
    file_digest,
)
from sos.artifacts.catalog import (
    LocalArtifactCatalog,
    check_immutable,
    default_data_dir,
    is_dirty_version,
)
from sos.artifacts.local import LocalArtifactStore
from sos.artifacts.s3 import S3ArtifactStore
from sos.artifacts.safety import (
    check_digest,
    check_filename,
    check_name,
    check_version,
    check_zip_entries,
)

__all__ = [
    "CHUNK_SIZE",
    "ArtifactStore",
    "FileUpload",
    "LocalArtifactCatalog",
    "LocalArtifactStore",
    "MemoryArtifactStore",
    "S3ArtifactStore",
    "StoredBlob",
    "Upload",
    "check_digest",
    "check_filename",
    "check_immutable",
    "check_name",
    "check_version",
    "check_zip_entries",
    "default_data_dir",
    "file_digest",
    "is_dirty_version",
]
