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
import json
import os
import signal
import subprocess
import venv
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sos.build.runner import BuildRun, BuildRunner, LineReader, passed_on
from sos.build.source import unpack_source
from sos.build.toolkit import ensure_toolkit
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
REQUEST_FILE = "request.json"

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


class BuilderEnvironment(BuildRunner):
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

    def identity(self) -> tuple[str, ...] | None:
        self.ensure()
        if self.toolkit is None:
            return None
        return (self.toolkit.name, self.python.version, self.isolation)

    def interpreter(self) -> str:
        return f"python {self.python.version}"

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
            self.toolkit = ensure_toolkit(self.root)
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
        env = passed_on(server_env)
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
        for folder in ("tmp", "sos-home"):  # made the builder's by run's prepare_work
            (work / folder).mkdir(exist_ok=True)
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

    def run(self, run: BuildRun, output: Callable[[str], None]) -> int | None:
        """Unpack the source into ``work/src`` and run the driver in the builder, its
        output line by line."""
        work = run.dir / "work"
        self.ensure()
        unpack_source(run.dir / "source.tar.gz", work / "src", max_bytes=run.max_unpacked)
        run.out_dir.mkdir(parents=True)
        command = self.command(work, REQUEST_FILE, run.environ)
        request = {
            **run.request,
            "source": f"{command.work}/src/{run.build.project}",
            "out": f"{command.work}/out",
            "python": command.python,
        }
        (work / REQUEST_FILE).write_text(json.dumps(request), encoding="utf-8")
        self.prepare_work(work)
        if run.stop.reason is not None:
            return None
        process: subprocess.Popen[bytes] | None = None

        def kill() -> None:
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)

        process = subprocess.Popen(
            command.argv,
            env=command.env,
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not run.stop.on_stop(kill):
            kill()
        assert process.stdout is not None
        lines = LineReader()  # each line bounded: output without newlines is cut
        while chunk := os.read(process.stdout.fileno(), 1 << 16):
            for line in lines.feed(chunk):
                output(line)
        for line in lines.end():
            output(line)
        return process.wait()
