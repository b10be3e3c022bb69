"""Checks that keep user-supplied names, digests and archives from escaping the store.

Names and versions follow ``sos.models.Artifact`` (letters, digits, ``.``, ``_``, ``-``,
``+`` in versions; no ``/``, no ``..``). A digest must be ``sha256:`` and 64 lowercase hex
digits before it is ever turned into a path. Zip-based artifacts (Python ``.pyz``, JVM
``.jar``) are inspected so that no entry can land outside the directory it is unpacked to.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from sos.errors import ValidationError
from sos.models import ARTIFACT_NAME, ARTIFACT_VERSION, DIGEST

__all__ = [
    "check_digest",
    "check_filename",
    "check_name",
    "check_version",
    "check_zip_entries",
    "is_zip",
]

_FILENAME_MAX = 255


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise ValidationError(
            f"digest {digest!r} must look like sha256:<64 lowercase hex digits>",
            details={"field": "digest"},
        )
    return digest


def _no_tricks(what: str, value: str) -> None:
    if "\x00" in value:
        raise ValidationError(f"{what} contains a NUL byte", details={"field": what})
    if value.startswith(("/", "\\")) or "/" in value or "\\" in value:
        raise ValidationError(
            f"{what} {value!r} may not contain '/' or '\\' or be an absolute path",
            details={"field": what},
        )
    if ".." in value:
        raise ValidationError(f"{what} {value!r} may not contain '..'", details={"field": what})


def check_name(name: str) -> str:
    _no_tricks("artifact name", name)
    if not ARTIFACT_NAME.match(name):
        raise ValidationError(
            f"artifact name {name!r} may hold letters, digits, '.', '_' and '-', starting "
            "with a letter or digit, at most 100 characters (like sfix_service)",
            details={"field": "name"},
        )
    return name


def check_version(version: str) -> str:
    _no_tricks("artifact version", version)
    if not ARTIFACT_VERSION.match(version):
        raise ValidationError(
            f"artifact version {version!r} may hold letters, digits, '.', '_', '+' and '-', "
            "at most 64 characters (like 1.2.3 or v0.0.16)",
            details={"field": "version"},
        )
    return version


def check_filename(filename: str) -> str:
    """A bare file name (no directories), as a client may suggest one for an upload."""
    _no_tricks("file name", filename)
    if filename in {"", "."} or len(filename) > _FILENAME_MAX or filename.startswith("."):
        raise ValidationError(
            f"file name {filename!r} must be a plain name like app-1.0.0.pyz",
            details={"field": "filename"},
        )
    return filename


def is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\x00" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "uses '\\' as a separator"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "climbs out with '..'"
    mode = info.external_attr >> 16
    if mode and stat.S_ISLNK(mode):
        return "is a symbolic link"
    return None


def check_zip_entries(path: Path, *, what: str = "artifact") -> int:
    """Refuse a zip whose entries could escape the directory it is unpacked into.

    Returns the number of entries checked. Raises ``ValidationError`` naming the first bad
    entry, or when ``path`` is not a readable zip.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValidationError(f"{what} is not a readable zip archive: {exc}") from None
    for info in infos:
        problem = _entry_problem(info)
        if problem:
            raise ValidationError(
                f"{what} holds an unsafe entry {info.filename!r}: it {problem}; "
                "SOS refuses archives whose entries could land outside their directory",
                details={"entry": info.filename},
            )
    return len(infos)
