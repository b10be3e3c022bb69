"""A name+version names one digest: same bytes again is a no-op, other bytes a conflict."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import sos.artifacts
from sos.artifacts import LocalArtifactCatalog, check_immutable, file_digest, is_dirty_version
from sos.errors import ConflictError, NotFoundError
from sos.models import ArtifactMetadata


def meta(path: Path, version: str = "1.0.0") -> ArtifactMetadata:
    return ArtifactMetadata(
        name="svc",
        version=version,
        language="python",
        runtime_version="3.11",
        entry_point="svc:app",
        digest=file_digest(path),
        size=path.stat().st_size,
        created_by="ada",
        created_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    )


def artifact(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_public_names_are_pinned() -> None:
    assert "ArtifactStore" in sos.artifacts.__all__
    assert "check_immutable" in sos.artifacts.__all__


def test_add_records_and_lists_by_name(tmp_path: Path) -> None:
    catalog = LocalArtifactCatalog(tmp_path / "cat")
    one = artifact(tmp_path, "one", b"one")
    recorded, new, replaced = catalog.add(one, meta(one))
    assert new and replaced is None and recorded.digest == file_digest(one)
    assert [m.version for m in catalog.list("svc")] == ["1.0.0"]
    assert catalog.path(recorded).read_bytes() == b"one"


def test_same_bytes_again_is_a_no_op(tmp_path: Path) -> None:
    catalog = LocalArtifactCatalog(tmp_path / "cat")
    one = artifact(tmp_path, "one", b"one")
    catalog.add(one, meta(one))
    again, new, _ = catalog.add(one, meta(one))
    assert not new and again.digest == file_digest(one)


def test_other_bytes_under_a_pushed_version_conflict(tmp_path: Path) -> None:
    catalog = LocalArtifactCatalog(tmp_path / "cat")
    one, two = artifact(tmp_path, "one", b"one"), artifact(tmp_path, "two", b"two")
    recorded, _, _ = catalog.add(one, meta(one))
    pushed = recorded.model_copy(update={"pushed_by": "ci", "pushed_at": datetime.now(UTC)})
    catalog.mark_pushed(pushed, "http://sos.example:8080")
    with pytest.raises(
        ConflictError, match=r"svc 1.0.0 already exists with other content.*sos.example"
    ):
        catalog.add(two, meta(two))
    assert catalog.require("svc", "1.0.0").digest == file_digest(one)


def test_an_unpushed_build_is_replaced_and_its_orphaned_blob_dropped(tmp_path: Path) -> None:
    catalog = LocalArtifactCatalog(tmp_path / "cat")
    one, two = artifact(tmp_path, "one", b"one"), artifact(tmp_path, "two", b"two")
    catalog.add(one, meta(one))
    _, new, replaced = catalog.add(two, meta(two))
    assert new and replaced is not None and replaced.digest == file_digest(one)
    assert catalog.require("svc", "1.0.0").digest == file_digest(two)
    assert not catalog.store.exists(file_digest(one))


def test_mark_pushed_ignores_a_digest_that_is_not_the_local_one(tmp_path: Path) -> None:
    catalog = LocalArtifactCatalog(tmp_path / "cat")
    one, two = artifact(tmp_path, "one", b"one"), artifact(tmp_path, "two", b"two")
    catalog.add(one, meta(one))
    other = meta(two).model_copy(update={"pushed_at": datetime.now(UTC), "pushed_by": "ci"})
    catalog.mark_pushed(other, "http://sos.example:8080")
    assert catalog.require("svc", "1.0.0").pushed_at is None


def test_unknown_version_lists_the_known_ones(tmp_path: Path) -> None:
    catalog = LocalArtifactCatalog(tmp_path / "cat")
    one = artifact(tmp_path, "one", b"one")
    catalog.add(one, meta(one, "1.0.0"))
    with pytest.raises(NotFoundError, match=r"known versions: 1.0.0"):
        catalog.require("svc", "9.9.9")


@pytest.mark.parametrize(
    ("version", "dirty"),
    [
        ("1.0.0+dirty", True),
        ("1.0.dev3+g1a2b3c.d20240102", True),
        ("1.0.0-dirty", True),
        ("1.0.0", False),
        ("v0.0.16", False),
        ("2.0.0rc1", False),
    ],
)
def test_dirty_versions_are_recognised(version: str, dirty: bool) -> None:
    assert is_dirty_version(version) is dirty


def test_dirty_version_conflict_says_to_commit_and_release(tmp_path: Path) -> None:
    one = artifact(tmp_path, "one", b"one")
    existing = meta(one, "1.0.0+dirty")
    with pytest.raises(ConflictError, match=r"local \(dirty\) version.*commit your changes"):
        check_immutable(existing, "sha256:" + "0" * 64)
    assert check_immutable(existing, existing.digest) is True
    assert check_immutable(None, existing.digest) is False
