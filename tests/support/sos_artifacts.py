"""Artifacts for tests of the artifact store and the pages that list them: a file of some
bytes with the metadata a build would write next to it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from sos.models import ArtifactMetadata


def make_artifact(
    tmp_path: Path, name: str, version: str, data: bytes, language: str = "node"
) -> Path:
    path = tmp_path / f"{name}-{version}.bin"
    path.write_bytes(data)
    meta = ArtifactMetadata(
        name=name,
        version=version,
        language=language,  # type: ignore[arg-type]
        runtime_version="20",
        entry_point="server.js",
        digest="sha256:" + hashlib.sha256(data).hexdigest(),
        size=len(data),
        created_by="ada",
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
        filename=path.name,
    )
    path.with_name(path.name + ".json").write_text(meta.model_dump_json())
    return path
