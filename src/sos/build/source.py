"""A project's source as one archive, for remote builds: ``pack_source`` on the laptop,
``unpack_source`` on the server.

What is packed: the files a local build would fingerprint (in a git work tree, what git
keeps: tracked or untracked but not ignored; elsewhere every file, minus ``.gitignore``'s
patterns), minus ``.sosignore``'s patterns (same syntax), minus caches, VCS data and build
output (``.git``, ``.venv``, ``node_modules``, ``dist``...). Local path dependencies
(``../shared``, ``../..``) are packed with it, at their places relative to the project. The
archive is a tar with sorted entries, no timestamps and no owners, so the same source gives
the same digest (the tar's); it is gzipped for the upload.

Path safety: a symbolic link inside the project to a file inside it is packed as that
file; one that points out of the project is refused with its name. No entry is absolute
or climbs out with ``..``; ``unpack_source`` checks every entry again (regular files and
directories only, no links, no devices), and bounds the total size unpacked.
"""

from __future__ import annotations

import fnmatch
import functools
import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sos.build.cache import IGNORED_DIRS, IGNORED_SUFFIXES, _git_files
from sos.errors import PayloadTooLargeError, ValidationError

__all__ = [
    "DEFAULT_MAX_SOURCE_BYTES",
    "PackedSource",
    "max_source_bytes",
    "pack_source",
    "safe_project_dir",
    "source_digest",
    "unpack_source",
]

DEFAULT_MAX_SOURCE_BYTES = 64 * 2**20
#: how much larger than the archive its unpacked files may be (a gzip bomb stops there)
UNPACK_RATIO = 20
MAX_ENTRIES = 100_000


def max_source_bytes(env: dict[str, str] | None = None) -> int:
    """``SOS_MAX_SOURCE_BYTES``: the largest packed source a remote build takes."""
    raw = (os.environ if env is None else env).get("SOS_MAX_SOURCE_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_SOURCE_BYTES
    if not raw.isdigit() or int(raw) <= 0:
        raise ValidationError(f"SOS_MAX_SOURCE_BYTES={raw!r} must be a positive number of bytes")
    return int(raw)


@dataclass(frozen=True, eq=False)
class PackedSource:
    """A packed project: the tar of its files, its digest, and what is in it. ``data``
    (what is uploaded) is the tar gzipped, made when first asked for: the digest is the
    tar's, so a server that built this source before is asked before anything is
    compressed or sent."""

    tar: bytes
    digest: str
    files: tuple[str, ...]
    #: the sum of the packed files' sizes
    unpacked_size: int
    #: where the project is in the archive ("." unless local dependencies are packed too)
    project: str = "."

    @functools.cached_property
    def data(self) -> bytes:
        return gzip.compress(self.tar, compresslevel=6, mtime=0)

    @property
    def size(self) -> int:
        """The size of the upload (gzipped)."""
        return len(self.data)


class _Patterns:
    """The patterns of a ``.gitignore``-style file: ``#`` comments, ``!`` negation, a
    trailing ``/`` for directories only, a ``/`` inside anchors to the project root."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[tuple[bool, bool, bool, str]] = []
        for raw in lines:
            line = raw.rstrip("\n").rstrip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            line = line[1:] if negate else line
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            anchored = "/" in line
            self.rules.append((negate, dir_only, anchored, line.lstrip("/")))

    @classmethod
    def read(cls, *files: Path) -> _Patterns:
        lines: list[str] = []
        for file in files:
            if file.is_file():
                lines += file.read_text(encoding="utf-8", errors="replace").splitlines()
        return cls(lines)

    def ignored(self, rel: str, is_dir: bool) -> bool:
        result = False
        for negate, dir_only, anchored, pattern in self.rules:
            if dir_only and not is_dir:
                continue
            target = rel if anchored else rel.rsplit("/", 1)[-1]
            if fnmatch.fnmatchcase(target, pattern) or (
                anchored and fnmatch.fnmatchcase(rel, pattern + "/**")
            ):
                result = not negate
        return result


def _candidates(root: Path, patterns: _Patterns) -> list[str]:
    """Relative paths of the files to pack (before link checks), sorted."""
    tracked = _git_files(root)
    found: list[str] = []
    if tracked is not None:
        for path in tracked:
            rel = path.relative_to(root).as_posix()
            parts = rel.split("/")
            # (a link named .venv is a file to git, which a ".venv/" pattern does not match)
            if any(p in IGNORED_DIRS for p in parts) or rel.endswith(IGNORED_SUFFIXES):
                continue
            if any(patterns.ignored("/".join(parts[:i]), True) for i in range(1, len(parts))):
                continue
            if not patterns.ignored(rel, False) and os.path.lexists(path):
                found.append(rel)
        return sorted(found)
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in IGNORED_DIRS
            and not d.endswith(".egg-info")
            and not patterns.ignored(prefix + d, True)
        )
        for name in dirnames:  # links to directories are not walked: say so if they escape
            _check_link(root, root / (prefix + name), prefix + name)
        for name in filenames:
            rel = prefix + name
            if name.endswith(IGNORED_SUFFIXES) or patterns.ignored(rel, False):
                continue
            found.append(rel)
    return sorted(found)


def _check_link(root: Path, path: Path, rel: str) -> Path | None:
    """The file a link resolves to (inside ``root``), None for a plain file; raises for a
    link out of the project."""
    if not path.is_symlink():
        return None
    target = path.resolve()
    if not target.is_relative_to(root):
        raise ValidationError(
            f"{rel} is a symbolic link to {os.readlink(path)}, outside the project: remote "
            "builds only take the project's own files; copy what it needs into the project, "
            "or list the link in .sosignore",
            details={"path": rel},
        )
    return target


def safe_project_dir(rel: str) -> str:
    """A project directory inside an archive: ``.`` or a safe relative path."""
    return "." if rel in ("", ".") else _safe_name(rel)


def _safe_name(rel: str) -> str:
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or not rel or "\\" in rel:
        raise ValidationError(f"{rel!r} is not a safe path inside the project")
    return path.as_posix()


def _files_of(root: Path, skip_under: Path | None = None) -> list[tuple[str, Path]]:
    """(path relative to ``root``, file to read) for every file to pack of ``root``."""
    patterns = _Patterns.read(root / ".gitignore", root / ".sosignore")
    files: list[tuple[str, Path]] = []
    for rel in _candidates(root, patterns):
        path = root / rel
        if skip_under is not None and path.is_relative_to(skip_under):
            continue  # the project's own files follow the project's own rules
        target = _check_link(root, path, rel) or path
        if target.is_file():
            files.append((_safe_name(rel), target))
    return files


def pack_source(
    root: Path | str, *, max_bytes: int | None = None, local: Sequence[Path] = ()
) -> PackedSource:
    """Pack the project in ``root`` (see the module docstring); refuses more than
    ``max_bytes`` (default ``SOS_MAX_SOURCE_BYTES``) of archive with the largest files.

    ``local``: the project's local path dependencies (``../shared``, ``../..``). They are
    packed too, each by its own ignore rules, at their places relative to the project, so
    that the same relative paths resolve on the builder; the archive's root is then their
    common ancestor with the project, and ``PackedSource.project`` says where the project
    is in it."""
    root = Path(root).resolve()
    limit = max_source_bytes() if max_bytes is None else max_bytes
    extra = [Path(p).resolve() for p in local]
    base = Path(os.path.commonpath([root, *extra])) if extra else root
    project = root.relative_to(base).as_posix()
    prefix = "" if project == "." else project + "/"
    files = {prefix + rel: path for rel, path in _files_of(root)}
    for dep in extra:
        dep_prefix = dep.relative_to(base).as_posix()
        dep_prefix = "" if dep_prefix == "." else dep_prefix + "/"
        if dep.is_file():
            files.setdefault(dep_prefix.rstrip("/"), dep)
            continue
        for rel, path in _files_of(dep, skip_under=root):
            files.setdefault(dep_prefix + rel, path)
    ordered = sorted(files.items())
    buffer = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, path in ordered:
            stat = path.stat()
            info = tarfile.TarInfo(rel)
            info.size = stat.st_size
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.mtime = 0
            with path.open("rb") as handle:
                tar.addfile(info, handle)
            total += stat.st_size
            if total > limit * UNPACK_RATIO:
                break  # refused below, whatever it compresses to
    raw = buffer.getvalue()
    packed = PackedSource(
        tar=raw,
        digest="sha256:" + hashlib.sha256(raw).hexdigest(),
        files=tuple(rel for rel, _ in ordered),
        unpacked_size=total,
        project=project,
    )
    if total > limit * UNPACK_RATIO or (total > limit and packed.size > limit):
        biggest = sorted(ordered, key=lambda f: f[1].stat().st_size, reverse=True)[:5]
        named = ", ".join(f"{rel} ({p.stat().st_size // 1024} KiB)" for rel, p in biggest)
        raise PayloadTooLargeError(
            f"the project's source packs into more than {limit} bytes (SOS_MAX_SOURCE_BYTES); "
            f"the largest files: {named}. List data, models or build output in .sosignore "
            "(same syntax as .gitignore)",
            details={"limit": limit},
        )
    return packed


def source_digest(archive: Path, *, max_bytes: int) -> str:
    """The digest of the source in a gzipped archive (its tar's, as ``pack_source``
    reports it); reads at most ``max_bytes`` of tar."""
    sha = hashlib.sha256()
    seen = 0
    try:
        with gzip.open(archive, "rb") as handle:
            while chunk := handle.read(1 << 20):
                seen += len(chunk)
                if seen > max_bytes:
                    raise PayloadTooLargeError(
                        f"the source unpacks into more than {max_bytes} bytes"
                    )
                sha.update(chunk)
    except (OSError, EOFError) as exc:
        raise ValidationError(f"the source is not a gzipped tar archive: {exc}") from None
    return "sha256:" + sha.hexdigest()


def unpack_source(archive: Path, dest: Path, *, max_bytes: int) -> list[str]:
    """Unpack an archive made by ``pack_source`` into ``dest`` (created), checking every
    entry; at most ``max_bytes`` of files. Returns the files' relative paths."""
    dest.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    total = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                if len(names) >= MAX_ENTRIES:
                    raise ValidationError(f"the source holds more than {MAX_ENTRIES} entries")
                name = member.name
                if member.isdir():
                    _safe_name(name.rstrip("/"))
                    (dest / name).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise ValidationError(
                        f"the source entry {name!r} is not a regular file (links, devices "
                        "and fifos are refused)"
                    )
                rel = _safe_name(name)
                total += member.size
                if total > max_bytes:
                    raise PayloadTooLargeError(
                        f"the source unpacks into more than {max_bytes} bytes"
                    )
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                handle = tar.extractfile(member)
                assert handle is not None
                with handle, target.open("wb") as out:
                    while chunk := handle.read(1 << 20):
                        out.write(chunk)
                target.chmod(0o755 if member.mode & 0o111 else 0o644)
                names.append(rel)
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile):
            raise
        raise ValidationError(f"the source is not a gzipped tar archive: {exc}") from None
    return names
