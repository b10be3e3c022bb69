"""Where remote builds run on a server with the local runtime: a clean builder of the
runtime's language and version, never the server's own environment.

The builder is made once per server (under ``DATA_DIR/builds``):

- ``python/``: a virtualenv of the base interpreter the local runtime runs artifacts on
  (``sos.runtime.local.sandbox.RuntimePython``: the same version and layout), with pip and
  nothing else, so pip resolves and installs for the Python the artifact will run on;
- ``toolkit-KEY/``: a copy of the ``sos`` package and of the few libraries its build code
  imports (pydantic, packaging, shiv...), plus the version records of the servers SOS
  bundles (gunicorn, uvicorn). The build driver (``sos.build._remote_worker``) runs from
  it with ``python -I``: no ``PYTHONPATH``, no user site, and the server's virtualenv on
  no path.

Each build then runs as a process of its own with an environment made from nothing
(``PATH``, ``HOME``, ``TMPDIR``, ``LANG``, the build cache, and pip's and proxies'
``PIP_*``/``*_PROXY`` settings the server was given), in its own directory. With
``SOS_BUILD_SANDBOX=bubblewrap`` (the default when the server runs as root with
bubblewrap installed, as the local runtime's sandbox) it runs under ``bwrap`` as an
unprivileged builder uid with no capabilities, its own PID/IPC/UTS namespaces, ``/usr``
and ``/etc`` read-only, the builder Python and toolkit read-only, only its own work
directory and the build cache writable, and a private ``/tmp`` and home: the data dir,
database, tokens and other builds are not there. ``process`` keeps the clean process and
environment without the sandbox.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import os
import shutil
import sys
import venv
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

from sos.errors import ValidationError
from sos.runtime.local.sandbox import (
    UID_FIRST,
    RuntimePython,
    _bind,
    _system,
    _tmpfs,
    sandbox_problem,
)

__all__ = ["BUILDER_UID", "ISOLATIONS", "BuilderCommand", "BuilderEnvironment"]

ISOLATIONS = ("bubblewrap", "process")
#: the uid sandboxed builds run as: below every service uid of every server
BUILDER_UID = UID_FIRST - 1
#: what the build code imports besides the standard library (found at start, these are
#: kept too: the servers SOS bundles into Python artifacts, read by version)
BUNDLED_SERVERS = ("gunicorn", "uvicorn", "uvloop", "httptools", "flight-sos")
#: the environment variables a build takes from the server's (pip's index and proxies)
PASSED_ON = ("PIP_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy")
PASSED_EXACT = frozenset({"SSL_CERT_FILE", "SOURCE_DATE_EPOCH", "SOS_NCC_VERSION"})

PYTHON_INSIDE = PurePosixPath("/sos/python")
TOOLKIT_INSIDE = PurePosixPath("/sos/toolkit")
WORK_INSIDE = PurePosixPath("/sos/work")
CACHE_INSIDE = PurePosixPath("/sos/cache")
HOME_INSIDE = PurePosixPath("/home/sos")


@dataclass(frozen=True)
class BuilderCommand:
    """How one build's driver is started, and where it sees its work directory."""

    argv: list[str]
    env: dict[str, str]
    work: str
    python: str


def _build_modules() -> list[str]:
    """Top-level modules outside the standard library that the build code imports."""
    for name in ("sos.build", "sos.build.api", "sos.build._remote_worker"):
        importlib.import_module(name)
    from sos.build.registry import registered_builders

    registered_builders()
    stdlib = set(sys.stdlib_module_names)
    found = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None) or ""
        top = module.__name__.split(".")[0]
        if top in stdlib or top.startswith("_distutils") or top == "sos" or not file:
            continue
        if "site-packages" in file or "dist-packages" in file:
            found.add(top)
    return sorted(found)


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


class BuilderEnvironment:
    """The clean builder of one server (see the module docstring)."""

    def __init__(self, root: Path, isolation: str | None = None) -> None:
        self.root = root
        if isolation is None:
            isolation = os.environ.get("SOS_BUILD_SANDBOX", "").strip() or (
                "bubblewrap" if sandbox_problem() is None else "process"
            )
        if isolation not in ISOLATIONS:
            raise ValidationError(
                f"SOS_BUILD_SANDBOX={isolation!r} is unknown: use bubblewrap or process"
            )
        if isolation == "bubblewrap" and (problem := sandbox_problem()) is not None:
            raise ValidationError(f"builds cannot be sandboxed by bubblewrap: {problem}")
        self.isolation = isolation
        self.python = RuntimePython(root / "python")
        self.cache = root / "cache"
        self.toolkit: Path | None = None

    def describe(self) -> str:
        python = f"Python {self.python.version} (a clean virtualenv with pip only)"
        if self.isolation == "bubblewrap":
            return f"sandboxed by bubblewrap as uid {BUILDER_UID}; {python}"
        return f"a separate process with a clean environment; {python}"

    def ensure(self) -> None:
        """Make the builder Python and toolkit (once per process; again at a start when
        Python or SOS changed)."""
        if self.toolkit is not None and self.toolkit.is_dir():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._ensure_python()
            self.toolkit = self._ensure_toolkit()
            self.cache.mkdir(exist_ok=True)
            if self.isolation == "bubblewrap":
                os.chown(self.cache, BUILDER_UID, BUILDER_UID)

    def _ensure_python(self) -> None:
        config = self.python.dir / "pyvenv.cfg"
        wanted = f"home = {self.python.base_executable.parent}"
        pip = list(self.python.dir.glob("lib/python*/site-packages/pip"))
        with contextlib.suppress(OSError):
            if wanted in config.read_text().splitlines() and pip:
                return
        venv.EnvBuilder(clear=True, symlinks=True, with_pip=True).create(self.python.dir)
        for folder in [self.python.dir, *self.python.dir.rglob("*")]:
            if folder.is_dir() and not folder.is_symlink():
                folder.chmod(0o755)

    def _ensure_toolkit(self) -> Path:
        import sos

        modules = _build_modules()
        sos_dir = Path(sos.__file__).parent
        sources = [sos_dir, *self._module_paths(modules), *_dist_dirs(modules)]
        digest = hashlib.sha256()
        for source in sources:
            digest.update(str(source).encode())
            for path in sorted(source.rglob("*")) if source.is_dir() else [source]:
                if path.is_file() and "__pycache__" not in path.parts:
                    stat = path.stat()
                    digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        target = self.root / f"toolkit-{digest.hexdigest()[:16]}"
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
        for old in self.root.glob("toolkit-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        return target

    @staticmethod
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

    # ---- one build

    def prepare_work(self, work: Path) -> None:
        """Make ``work`` (the build's source and output) the builder's to write."""
        if self.isolation != "bubblewrap":
            return
        for path in [work, *work.rglob("*")]:
            os.chown(path, BUILDER_UID, BUILDER_UID, follow_symlinks=False)

    def command(self, work: Path, request: str, server_env: Mapping[str, str]) -> BuilderCommand:
        """The driver's argv and environment for the build in ``work`` (``request``: the
        request file's name in it)."""
        assert self.toolkit is not None, "call ensure() first"
        sandboxed = self.isolation == "bubblewrap"
        python = PYTHON_INSIDE if sandboxed else self.python.dir
        toolkit = TOOLKIT_INSIDE if sandboxed else self.toolkit
        inside = WORK_INSIDE if sandboxed else work
        home = HOME_INSIDE if sandboxed else work / "home"
        env = {k: v for k, v in server_env.items() if k.startswith(PASSED_ON) or k in PASSED_EXACT}
        env.update(
            PATH=f"{python}/bin:/usr/local/bin:/usr/bin:/bin",
            HOME=str(home),
            USER="sos",
            LOGNAME="sos",
            LANG="C.UTF-8",
            TMPDIR=f"{inside}/tmp",
            SOS_CACHE_DIR=str(CACHE_INSIDE if sandboxed else self.cache),
            PIP_CACHE_DIR=f"{CACHE_INSIDE if sandboxed else self.cache}/pip",
            SOS_HOME=f"{inside}/sos-home",
            SHIV_ROOT=f"{home}/.shiv",
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONUNBUFFERED="1",
        )
        driver = [
            f"{python}/bin/python3",
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(toolkit)!r}); "
            "from sos.build._remote_worker import main; raise SystemExit(main())",
            f"{inside}/{request}",
        ]
        if not sandboxed:
            for folder in ("tmp", "home", "sos-home"):
                (work / folder).mkdir(exist_ok=True)
            return BuilderCommand(driver, env, str(work), f"{python}/bin/python3")
        for folder in ("tmp", "sos-home"):
            (work / folder).mkdir(exist_ok=True)
        self.prepare_work(work)
        wrapped = [
            "bwrap",
            "--die-with-parent",
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "sos-builder",
            *_system(),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            *_tmpfs("/tmp", 256 * 2**20),
            *_tmpfs(str(HOME_INSIDE), 512 * 2**20),
        ]
        prefix = self.python.base_prefix
        if not prefix.is_relative_to("/usr"):
            wrapped += _bind(prefix, PurePosixPath(prefix))
        wrapped += _bind(self.python.dir, PYTHON_INSIDE)
        wrapped += _bind(self.toolkit, TOOLKIT_INSIDE)
        wrapped += _bind(work, WORK_INSIDE, writable=True)
        wrapped += _bind(self.cache, CACHE_INSIDE, writable=True)
        wrapped += [
            "--chdir",
            str(WORK_INSIDE),
            "--",
            "setpriv",
            f"--reuid={BUILDER_UID}",
            f"--regid={BUILDER_UID}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
            *driver,
        ]
        return BuilderCommand(wrapped, env, str(WORK_INSIDE), f"{PYTHON_INSIDE}/bin/python3")
