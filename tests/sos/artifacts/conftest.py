from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sos.artifacts import ArtifactStore, LocalArtifactStore, MemoryArtifactStore


@pytest.fixture(params=["memory", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    """Every ArtifactStore implementation must pass the same contract tests."""
    if request.param == "memory":
        yield MemoryArtifactStore()
    else:
        yield LocalArtifactStore(tmp_path / "artifacts")
