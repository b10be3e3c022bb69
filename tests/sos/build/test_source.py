"""Packing a project's source for a remote build: what is left out, path safety both ways,
the size limit, and the same digest for the same source."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from sos.build.source import pack_source, unpack_source
from sos.errors import PayloadTooLargeError, ValidationError


def make_project(root: Path) -> Path:
    (root / "svc").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n')
    (root / "svc" / "web.py").write_text("app = None\n")
    (root / "svc" / "run.sh").write_text("#!/bin/sh\n")
    (root / "svc" / "run.sh").chmod(0o755)
    return root


def test_gitignore_sosignore_and_build_output_are_left_out(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    (root / ".gitignore").write_text("*.log\nsecrets/\n!keep.log\n")
    (root / ".sosignore").write_text("data/\n/models/big.bin\n")
    for rel in [
        "app.log",
        "keep.log",
        "secrets/key.txt",
        "data/train.csv",
        "models/big.bin",
        "models/small.json",
        "dist/old.pyz",
        ".venv/lib/x.py",
        "node_modules/a/index.js",
        "svc/__pycache__/web.cpython-311.pyc",
        ".sos/build.log",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    packed = pack_source(root)
    assert sorted(packed.files) == [
        ".gitignore",
        ".sosignore",
        "keep.log",
        "models/small.json",
        "pyproject.toml",
        "svc/run.sh",
        "svc/web.py",
    ]
    again = pack_source(root)
    assert again.digest == packed.digest and again.data == packed.data
    out = tmp_path / "out"
    assert sorted(unpack_source(_write(tmp_path, packed.data), out, max_bytes=10**6)) == sorted(
        packed.files
    )
    assert os.access(out / "svc" / "run.sh", os.X_OK)
    assert not os.access(out / "svc" / "web.py", os.X_OK)


def test_in_a_git_work_tree_git_decides(tmp_path: Path) -> None:
    root = make_project(tmp_path / "g")
    (root / ".gitignore").write_text("ignored.txt\n")
    (root / "ignored.txt").write_text("x")
    (root / ".sosignore").write_text("notes.md\n")
    (root / "notes.md").write_text("x")
    (root / ".venv").symlink_to(tmp_path)  # a virtualenv linked from elsewhere: skipped
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    packed = pack_source(root)
    assert "ignored.txt" not in packed.files and "notes.md" not in packed.files
    assert "svc/web.py" in packed.files and not any(f.startswith(".git/") for f in packed.files)


def test_links_inside_are_packed_as_files_links_out_are_refused(tmp_path: Path) -> None:
    root = make_project(tmp_path / "l")
    (root / "alias.py").symlink_to("svc/web.py")
    packed = pack_source(root)
    assert "alias.py" in packed.files
    with tarfile.open(fileobj=io.BytesIO(packed.data), mode="r:gz") as tar:
        member = tar.getmember("alias.py")
        assert member.isfile() and tar.extractfile(member).read() == b"app = None\n"  # type: ignore[union-attr]
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (root / "leak.txt").symlink_to(outside)
    with pytest.raises(ValidationError, match=r"leak\.txt is a symbolic link .* outside"):
        pack_source(root)
    (root / "leak.txt").unlink()
    (root / "etc").symlink_to("/etc")
    with pytest.raises(ValidationError, match=r"etc is a symbolic link"):
        pack_source(root)


def test_the_size_limit_names_the_largest_files(tmp_path: Path) -> None:
    root = make_project(tmp_path / "s")
    (root / "weights.bin").write_bytes(os.urandom(200_000))
    with pytest.raises(PayloadTooLargeError, match=r"weights\.bin \(195 KiB\).*\.sosignore"):
        pack_source(root, max_bytes=50_000)
    (root / ".sosignore").write_text("*.bin\n")
    assert pack_source(root, max_bytes=50_000).size < 50_000


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "source.tar.gz"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("../escape.py", tarfile.REGTYPE, "not a safe path"),
        ("/etc/passwd", tarfile.REGTYPE, "not a safe path"),
        ("a/../../b.py", tarfile.REGTYPE, "not a safe path"),
        ("link", tarfile.SYMTYPE, "not a regular file"),
        ("hard", tarfile.LNKTYPE, "not a regular file"),
        ("dev", tarfile.CHRTYPE, "not a regular file"),
    ],
)
def test_unpack_refuses_entries_that_could_land_outside(
    tmp_path: Path, name: str, kind: bytes, message: str
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    data = _tar([(info, b"x" if kind == tarfile.REGTYPE else b"")])
    with pytest.raises(ValidationError, match=message):
        unpack_source(_write(tmp_path, data), tmp_path / "out", max_bytes=10**6)
    assert not (tmp_path / "escape.py").exists()


def test_unpack_bounds_the_unpacked_size_and_refuses_garbage(tmp_path: Path) -> None:
    info = tarfile.TarInfo("zeros.bin")
    data = _tar([(info, b"\0" * 100_000)])
    with pytest.raises(PayloadTooLargeError, match="unpacks into more than"):
        unpack_source(_write(tmp_path, data), tmp_path / "out", max_bytes=10_000)
    with pytest.raises(ValidationError, match="not a gzipped tar"):
        unpack_source(_write(tmp_path, b"not a tar"), tmp_path / "out2", max_bytes=10_000)
