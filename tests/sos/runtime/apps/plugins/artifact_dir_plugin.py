"""A server plug-in for the end-to-end tests: artifacts from a plain directory.

Until the server has its artifact store routes, the tests give ``sos server`` this
resolver: ``$SOS_TEST_ARTIFACTS/NAME-VERSION.json`` holds an artifact's metadata and the
file itself is ``$SOS_TEST_ARTIFACTS/<sha256 hex>``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sos.errors import NotFoundError
from sos.models import Artifact, ArtifactMetadata

ROOT = Path(os.environ.get("SOS_TEST_ARTIFACTS", "."))


class DirectoryResolver:
    def resolve(self, artifact: Artifact) -> ArtifactMetadata:
        path = ROOT / f"{artifact.name}-{artifact.version}.json"
        if not path.exists():
            raise NotFoundError(f"no artifact {artifact.name} {artifact.version} in {ROOT}")
        return ArtifactMetadata.model_validate_json(path.read_text())

    def metadata(self, digest: str) -> ArtifactMetadata | None:
        for path in ROOT.glob("*.json"):
            meta = ArtifactMetadata.model_validate_json(path.read_text())
            if meta.digest == digest:
                return meta
        return None


def configure(state: Any) -> None:
    state.resolver = DirectoryResolver()
    state.artifact_path = lambda digest: ROOT / digest.removeprefix("sha256:")
