"""Writing shiv zipapps in two parts, so that a code change does not recompress every
dependency.

shiv's own ``create_archive`` deflates the whole site-packages on every build (about
150 MB, 10-20 s, for a pandas service). Here the dependencies are deflated once into a
cached ``deps.zip`` (per dependency set), and each build copies those entries into the
artifact as they are (compressed bytes, no recompression), then adds the project's code, the
launcher and shiv's own bootstrap with shiv's functions. The result is an ordinary shiv
zipapp: shiv's bootstrap runs it and unpacks it into ``$SHIV_ROOT``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import struct
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shiv import __version__ as shiv_version
from shiv import bootstrap
from shiv.bootstrap.environment import Environment
from shiv.builder import (
    MAIN_TEMPLATE,
    iter_package_files,
    write_file_prefix,
    write_to_zipapp,
)
from shiv.constants import BUILD_AT_TIMESTAMP_FORMAT, SOURCE_DATE_EPOCH_DEFAULT

__all__ = ["build_deps_zip", "write_zipapp"]

logger = logging.getLogger(__name__)

SITE = "site-packages"
HASHES = "contents.sha256"
#: a zip local file header (APPNOTE 4.3.7); fields 10 and 11 are the name and extra lengths
LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


def _epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH_DEFAULT))


def _date_time() -> tuple[int, int, int, int, int, int]:
    stamp = time.gmtime(_epoch())
    return (stamp[0], stamp[1], stamp[2], stamp[3], stamp[4], stamp[5])


def _files(root: Path) -> list[Path]:
    return sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix != ".pyc"),
        key=lambda p: p.relative_to(root).as_posix(),
    )


def _add_tree(archive: zipfile.ZipFile, root: Path, sha: Any, skip: set[str]) -> set[str]:
    """Deflate every file of ``root`` into ``archive`` under site-packages/."""
    names = set()
    for path in _files(root):
        rel = path.relative_to(root).as_posix()
        if rel in skip:
            continue
        data = path.read_bytes()
        sha.update(data)
        sha.update(rel.encode())
        arcname = f"{SITE}/{rel}"
        write_to_zipapp(
            archive, arcname, data, _date_time(), zipfile.ZIP_DEFLATED, stat=path.stat()
        )
        names.add(rel)
    return names


def build_deps_zip(site: Path, target: Path, skip: set[str] | None = None) -> None:
    """Deflate a dependency tree once: ``target`` (a zip) and its content hash beside it."""
    sha = hashlib.sha256()
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _add_tree(archive, site, sha, skip or set())
    target.with_name(HASHES).write_text(sha.hexdigest())


def _copy_entries(source: zipfile.ZipFile, target: zipfile.ZipFile, skip: set[str]) -> int:
    """Copy entries of ``source`` into ``target`` without recompressing them."""
    copied = 0
    assert source.fp is not None and target.fp is not None
    for info in source.infolist():
        if info.filename.removeprefix(f"{SITE}/") in skip:
            continue
        if info.flag_bits & 0x08:  # sizes in a data descriptor: take the slow, safe way
            target.writestr(info, source.read(info))
            continue
        source.fp.seek(info.header_offset)
        header = LOCAL_HEADER.unpack(source.fp.read(LOCAL_HEADER.size))
        source.fp.seek(header[10] + header[11], os.SEEK_CUR)
        data = source.fp.read(info.compress_size)
        entry = copy.copy(info)
        entry.header_offset = target.fp.tell()
        target.fp.write(entry.FileHeader())
        target.fp.write(data)
        target.filelist.append(entry)
        target.NameToInfo[entry.filename] = entry
        target.start_dir = target.fp.tell()
        copied += 1
    return copied


def write_zipapp(
    target: Path,
    *,
    deps_zip: Path,
    code: list[Path],
    entry_point: str,
    extend_pythonpath: bool = False,
    interpreter: str = "/usr/bin/env python3",
) -> None:
    """A shiv zipapp of the cached ``deps_zip`` plus the trees in ``code`` (which win over
    dependencies with the same path)."""
    code_files: dict[str, Path] = {}
    for tree in code:
        for path in _files(tree):
            code_files[path.relative_to(tree).as_posix()] = path
    sha = hashlib.sha256(deps_zip.with_name(HASHES).read_bytes())
    date_time = _date_time()
    with target.open("wb") as handle:
        write_file_prefix(handle, interpreter)
        with (
            zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive,
            zipfile.ZipFile(deps_zip) as deps,
        ):
            _copy_entries(deps, archive, skip=set(code_files))
            for rel in sorted(code_files):
                data = code_files[rel].read_bytes()
                sha.update(data)
                sha.update(rel.encode())
                write_to_zipapp(
                    archive,
                    f"{SITE}/{rel}",
                    data,
                    date_time,
                    zipfile.ZIP_DEFLATED,
                    stat=code_files[rel].stat(),
                )
            for path, name in iter_package_files(bootstrap):
                write_to_zipapp(
                    archive,
                    f"_bootstrap/{name}",
                    path.read_bytes(),
                    date_time,
                    zipfile.ZIP_DEFLATED,
                    stat=path.stat(),
                )
            env = Environment(
                built_at=datetime.fromtimestamp(_epoch(), UTC).strftime(BUILD_AT_TIMESTAMP_FORMAT),
                shiv_version=shiv_version,
                build_id=sha.hexdigest(),
                entry_point=entry_point,
                compile_pyc=False,
                extend_pythonpath=extend_pythonpath,
                reproducible=True,
            )
            write_to_zipapp(
                archive, "environment.json", env.to_json().encode(), date_time, zipfile.ZIP_DEFLATED
            )
            main = MAIN_TEMPLATE.format(module="_bootstrap", fn="bootstrap")
            write_to_zipapp(archive, "__main__.py", main.encode(), date_time, zipfile.ZIP_DEFLATED)
    target.chmod(target.stat().st_mode | 0o111)
