"""SOS's build code as a directory a builder runs with ``python -I``: the toolkit.

A remote build never runs in the server's own environment. Its driver
(``sos.build._remote_worker``) runs from a copy of the ``sos`` package and of the few
libraries the build code imports (pydantic, packaging, shiv...), plus the version records
of the servers SOS bundles into Python artifacts (gunicorn, uvicorn): no ``PYTHONPATH``, no
user site, and the server's virtualenv on no path.

``ensure_toolkit(root)`` makes ``root/toolkit-KEY/`` (KEY: a digest of what it copies, so a
new SOS or library version makes a new one, and older ones are removed);
``pack_toolkit(toolkit)`` is the same as a ``.tar.gz`` next to it, for a builder elsewhere
(a Kubernetes Job downloads it). The copied libraries are the server's: compiled ones
(``pydantic_core``) are for the server's Python version and platform, so a builder must run
that Python version on that platform.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

from sos.errors import SOSError

__all__ = ["BUNDLED_SERVERS", "ensure_toolkit", "pack_toolkit"]

#: what the build code imports besides the standard library (found at start, these are
#: kept too: the servers SOS bundles into Python artifacts, read by version)
BUNDLED_SERVERS = ("gunicorn", "uvicorn", "uvloop", "httptools", "flight-sos")


#: run in a fresh interpreter: which modules outside the standard library the build code
#: imports (the server's own process has imported far more: its web server, the Kubernetes
#: client...)
_FIND_MODULES = """
import json, sys
import sos.build, sos.build.api, sos.build._remote_worker
from sos.build.registry import registered_builders
registered_builders()
found = set()
for module in list(sys.modules.values()):
    file = getattr(module, "__file__", None) or ""
    top = module.__name__.split(".")[0]
    if top in sys.stdlib_module_names or top.startswith("_distutils") or top == "sos":
        continue
    if file and ("site-packages" in file or "dist-packages" in file):
        found.add(top)
print(json.dumps(sorted(found)))
"""


def _build_modules() -> list[str]:
    """Top-level modules outside the standard library that the build code imports."""
    done = subprocess.run(
        [sys.executable, "-c", _FIND_MODULES],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise SOSError(f"cannot list the build code's libraries: {done.stderr.strip()[-2000:]}")
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    for name in modules:
        importlib.import_module(name)  # their paths, below
    return [str(name) for name in modules]


def _dist_dirs(modules: list[str]) -> list[Path]:
    names = set(BUNDLED_SERVERS)
    mapping = metadata.packages_distributions()
    for module in modules:
        names.update(mapping.get(module, []))
    dirs = []
    for name in sorted(names):
        with contextlib.suppress(metadata.PackageNotFoundError):
            path = getattr(metadata.distribution(name), "_path", None)
            if isinstance(path, Path) and path.is_dir():
                dirs.append(path)
    return dirs


def _module_paths(modules: list[str]) -> list[Path]:
    paths = []
    for name in modules:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file)
        paths.append(path.parent if path.name == "__init__.py" else path)
    return paths


def ensure_toolkit(root: Path) -> Path:
    """``root/toolkit-KEY``, made when missing (the caller holds ``root``'s lock)."""
    import sos

    modules = _build_modules()
    sos_dir = Path(sos.__file__).parent
    sources = [sos_dir, *_module_paths(modules), *_dist_dirs(modules)]
    digest = hashlib.sha256()
    for source in sources:
        digest.update(str(source).encode())
        for path in sorted(source.rglob("*")) if source.is_dir() else [source]:
            if path.is_file() and "__pycache__" not in path.parts:
                stat = path.stat()
                digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target = root / f"toolkit-{digest.hexdigest()[:16]}"
    if target.is_dir():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for source in sources:
        if source.is_dir():
            skip = shutil.ignore_patterns(
                "__pycache__", "*.pyc", *(["static"] if source == sos_dir else [])
            )
            shutil.copytree(source, tmp / source.name, ignore=skip, symlinks=False)
        else:
            shutil.copy2(source, tmp / source.name)
    for folder in [tmp, *tmp.rglob("*")]:
        folder.chmod(0o755 if folder.is_dir() else 0o644)
    tmp.replace(target)
    for old in root.glob("toolkit-*"):
        if old != target:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    return target


def pack_toolkit(toolkit: Path) -> Path:
    """``toolkit`` as ``toolkit-KEY.tar.gz`` beside it (made once; its members at the top
    level: ``sos/``, ``pydantic/``...)."""
    archive = toolkit.with_name(toolkit.name + ".tar.gz")
    if archive.is_file():
        return archive
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for path in sorted(toolkit.iterdir()):
            tar.add(path, arcname=path.name)
    tmp.replace(archive)
    return archive
