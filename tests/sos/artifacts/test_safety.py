"""Names, versions and archive entries that could escape the store are refused."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from sos.artifacts import check_filename, check_name, check_version, check_zip_entries
from sos.errors import ValidationError


@pytest.mark.parametrize(
    "name", ["../etc", "a/b", "/abs", "a\x00b", "..", "a\\b", "-lead", "", "x" * 101]
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        check_name(name)


@pytest.mark.parametrize("version", ["1.0/../../x", "/1.0", "1.0\x00", "..", "v 1"])
def test_unsafe_versions_are_refused(version: str) -> None:
    with pytest.raises(ValidationError):
        check_version(version)


def test_ordinary_names_and_versions_pass() -> None:
    assert check_name("sfix_service.api-2") == "sfix_service.api-2"
    assert check_version("1.2.3+dirty") == "1.2.3+dirty"
    assert check_filename("app-1.0.0.pyz") == "app-1.0.0.pyz"


@pytest.mark.parametrize("filename", ["../x.pyz", "/tmp/x", ".hidden", "a/b.js", "x\x00.js"])
def test_unsafe_upload_file_names_are_refused(filename: str) -> None:
    with pytest.raises(ValidationError):
        check_filename(filename)


def _zip(path: Path, entries: list[zipfile.ZipInfo | str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for entry in entries:
            archive.writestr(entry, b"x")
    return path


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("site-packages/../../evil.py", "climbs out"),
        ("/etc/cron.d/evil", "absolute path"),
        ("C:/evil", "absolute path"),
        ("site-packages\\..\\evil.py", "uses '\\\\'"),
    ],
)
def test_zip_entries_that_escape_are_refused(tmp_path: Path, entry: str, problem: str) -> None:
    archive = _zip(tmp_path / "a.pyz", ["site-packages/ok.py", entry])
    with pytest.raises(ValidationError, match=problem) as info:
        check_zip_entries(archive)
    assert info.value.details["entry"] == entry


def test_zip_symlink_entries_are_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("site-packages/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(ValidationError, match="symbolic link"):
        check_zip_entries(_zip(tmp_path / "a.jar", [link]))


def test_a_shebang_prefixed_zipapp_is_inspected(tmp_path: Path) -> None:
    path = tmp_path / "app.pyz"
    path.write_bytes(b"#!/usr/bin/env python3\n")
    with path.open("ab") as handle, zipfile.ZipFile(handle, "w") as archive:
        archive.writestr("__main__.py", "print('hi')")
        archive.writestr("site-packages/pkg/__init__.py", "")
    assert check_zip_entries(path) == 2


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.jar"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValidationError, match="not a readable zip"):
        check_zip_entries(path)
