"""The build cache: resolved dependencies, tools (ncc) and finished artifacts, by key.

Lives under ``$SOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/sos``, else ``~/.cache/sos``. Each
entry is a directory filled in a temporary sibling and renamed into place, so a crashed or
concurrent build never leaves a half-filled entry; a lock file serialises builders of the
same key. Entries are pruned least-recently-used first.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["BuildCache", "default_cache_dir", "fingerprint", "stable_key"]

logger = logging.getLogger(__name__)

#: directories never part of a project's source fingerprint
IGNORED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".sos",
        ".venv",
        "venv",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".idea",
        ".vscode",
        "node_modules",
        "dist",
    }
)
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")


def default_cache_dir() -> Path:
    if os.environ.get("SOS_CACHE_DIR"):
        return Path(os.environ["SOS_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sos"


def stable_key(*parts: Any) -> str:
    """A short hex key for a JSON-serialisable description of inputs."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _git_files(root: Path) -> list[Path] | None:
    """The files git would keep in ``root`` (tracked, or untracked but not ignored)."""
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        return None
    names = sorted({n for n in listed.stdout.decode("utf-8", "surrogateescape").split("\0") if n})
    return [root / n for n in names]


def iter_source_files(root: Path, ignored_dirs: Iterable[str] = ()) -> Iterator[Path]:
    """Files of a project in a stable order, skipping caches, VCS data and build output
    (and, in a git work tree, whatever .gitignore ignores)."""
    skip = IGNORED_DIRS | set(ignored_dirs)
    tracked = _git_files(root)
    if tracked is not None:
        for path in tracked:
            rel = path.relative_to(root)
            if any(part in skip for part in rel.parts[:-1]) or path.name.endswith(IGNORED_SUFFIXES):
                continue
            if path.is_file():
                yield path
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and not d.endswith(".egg-info"))
        for filename in sorted(filenames):
            if filename.endswith(IGNORED_SUFFIXES):
                continue
            yield Path(dirpath) / filename


def fingerprint(root: Path, ignored_dirs: Iterable[str] = ()) -> str:
    """sha256 over the relative paths, modes and contents of a project's files."""
    sha = hashlib.sha256()
    for path in iter_source_files(root, ignored_dirs):
        if path.is_symlink() and not path.exists():
            continue
        if not path.is_file():  # a FIFO, a socket, a device: no content (opening one blocks)
            continue
        rel = path.relative_to(root).as_posix()
        sha.update(rel.encode() + b"\0")
        sha.update(b"x" if os.access(path, os.X_OK) else b"-")
        try:
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    sha.update(chunk)
        except OSError as exc:
            from sos.build.errors import ProjectError

            raise ProjectError(
                f"cannot read {rel} as part of the project's source ({exc.strerror or exc}): "
                "it is not a file of the project (a server's data dir, a socket, a mount?). "
                "Keep such directories out of the project, or list them in .gitignore",
                file=root,
            ) from None
        sha.update(b"\0")
    return sha.hexdigest()


class BuildCache:
    def __init__(self, root: Path | None = None, *, keep: int = 20) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.keep = keep

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def lookup(self, kind: str, key: str) -> Path | None:
        entry = self.path(kind, key)
        if entry.is_dir():
            os.utime(entry)  # mark as recently used
            return entry
        return None

    @contextmanager
    def _lock(self, kind: str, key: str) -> Iterator[None]:
        lock_dir = self.root / kind
        lock_dir.mkdir(parents=True, exist_ok=True)
        with (lock_dir / f".{key}.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get_or_create(self, kind: str, key: str, fill: Callable[[Path], None]) -> tuple[Path, bool]:
        """The entry for ``key``, calling ``fill(tmpdir)`` to make it when absent.

        Returns the entry and whether it was already there (a cache hit).
        """
        found = self.lookup(kind, key)
        if found is not None:
            return found, True
        with self._lock(kind, key):
            found = self.lookup(kind, key)
            if found is not None:
                return found, True
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root / kind))
            try:
                fill(tmp)
                os.replace(tmp, self.path(kind, key))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        self.prune(kind)
        return self.path(kind, key), False

    def prune(self, kind: str, keep: int | None = None) -> list[Path]:
        """Remove all but the ``keep`` most recently used entries of ``kind``."""
        keep = self.keep if keep is None else keep
        base = self.root / kind
        if not base.is_dir():
            return []
        entries = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
        entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        removed = entries[keep:]
        for entry in removed:
            logger.info("pruning build cache entry %s", entry)
            shutil.rmtree(entry, ignore_errors=True)
        return removed

    def touch(self, kind: str, key: str) -> None:
        entry = self.path(kind, key)
        if entry.exists():
            now = time.time()
            os.utime(entry, (now, now))
