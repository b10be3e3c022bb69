"""The ArtifactStore contract: content-addressed, immutable, streamed, size-limited and
digest-checked writes; reads by digest."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from sos.artifacts import ArtifactStore, LocalArtifactStore, file_digest
from sos.errors import NotFoundError, PayloadTooLargeError, ValidationError


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_put_stores_bytes_under_their_digest(store: ArtifactStore) -> None:
    blob = store.put([b"hello ", b"world"])
    assert (blob.digest, blob.size, blob.created) == (digest(b"hello world"), 11, True)
    assert store.exists(blob.digest)
    assert store.read_bytes(blob.digest) == b"hello world"
    assert list(store.digests()) == [blob.digest]


def test_same_bytes_again_is_a_no_op(store: ArtifactStore) -> None:
    first = store.put(io.BytesIO(b"abc"))
    again = store.put(io.BytesIO(b"abc"), expected_digest=first.digest)
    assert (again.digest, again.created) == (first.digest, False)
    assert list(store.digests()) == [first.digest]


def test_digest_mismatch_is_refused_and_nothing_is_kept(store: ArtifactStore) -> None:
    wrong = digest(b"something else")
    with pytest.raises(ValidationError, match="not the expected") as info:
        store.put([b"abc"], expected_digest=wrong)
    assert info.value.details == {"expected": wrong, "actual": digest(b"abc")}
    assert not store.exists(digest(b"abc"))
    assert list(store.digests()) == []


def test_upload_over_the_size_limit_stops_at_the_limit(store: ArtifactStore) -> None:
    fed = []

    def chunks():
        for _ in range(100):
            fed.append(1)
            yield b"x" * 1000

    with pytest.raises(PayloadTooLargeError, match=r"larger than the limit of 4.9 KiB"):
        store.put(chunks(), max_size=5000)
    assert len(fed) == 6  # stopped reading as soon as the limit was passed
    assert list(store.digests()) == []


def test_missing_digest_is_not_found(store: ArtifactStore) -> None:
    with pytest.raises(NotFoundError, match="no artifact with digest"):
        store.open(digest(b"nothing"))
    assert not store.exists(digest(b"nothing"))
    assert store.delete(digest(b"nothing")) is False


@pytest.mark.parametrize("bad", ["sha256:../../etc/passwd", "md5:abc", "sha256:" + "A" * 64, ""])
def test_malformed_digests_never_reach_the_file_system(store: ArtifactStore, bad: str) -> None:
    with pytest.raises(ValidationError, match="must look like sha256"):
        store.exists(bad)
    with pytest.raises(ValidationError):
        store.put([b"x"], expected_digest=bad)


def test_get_copies_the_blob_to_a_file(store: ArtifactStore, tmp_path: Path) -> None:
    blob = store.put([b"payload"])
    target = store.get(blob.digest, tmp_path / "out" / "a.bin")
    assert target.read_bytes() == b"payload"
    assert file_digest(target) == blob.digest


def test_delete_removes_the_blob(store: ArtifactStore) -> None:
    blob = store.put([b"bye"])
    assert store.delete(blob.digest) is True
    assert not store.exists(blob.digest)


def test_local_blobs_are_read_only_files_and_stray_uploads_are_cleaned(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    blob = store.put([b"data"])
    path = store.local_path(blob.digest)
    assert path is not None and path.read_bytes() == b"data"
    assert path.stat().st_mode & 0o222 == 0
    upload = store.begin_upload()
    upload.write(b"half")  # a crash here leaves a stray file
    assert LocalArtifactStore(tmp_path).clean_tmp() == 1
    assert list((tmp_path / "tmp").iterdir()) == []
