"""Where an instance runs: a sandbox of its own service, on a clean runtime.

Two isolations, chosen when the server starts (``--backend-opt sandbox=...``, or
``SOS_SANDBOX``):

``bubblewrap`` (the default; needs root and Debian's ``bubblewrap``, which
``scripts/setup`` installs). Every instance runs under ``bwrap`` as the uid of its own
service (allocated by SOS per service, never root, never shared with another service,
never reused after the service is deleted), dropped with ``setpriv`` to no capabilities
(bounding set empty) and no new privileges, with at most ``processes`` processes and
threads (``RLIMIT_NPROC``, per uid), and no file it writes past 256 MiB (``RLIMIT_FSIZE``).
Its stdout and stderr are pipes to log writers outside it (``sos.runtime.local.logs``). It
sees:

- its own PID, IPC and UTS namespaces: no other process in ``/proc``;
- ``/usr`` and ``/etc`` read-only (the machine's system, as a container sees its image);
- its runtime read-only: for Python a clean interpreter (a virtualenv of the server's base
  Python with nothing installed: the server's own packages and virtualenv are on no path);
  Node, Go and the JVM only their runtime from ``/usr``;
- its artifact read-only at ``/sos/artifact/<file>``, and its service's unpacked packages
  read-only at ``/home/sos/.shiv`` (written only by the prepare step, as the same uid);
- its revision's config files read-only at ``/sos/config`` (``$SOS_CONFIG_DIR``);
- ``/home/sos`` (its home and working directory) and ``/tmp``: private, in memory, each
  limited to ``tmp_bytes``;
- a network of its own (``sos.runtime.local.network``: a namespace connected by pasta), or
  with ``sandbox_network=host`` the host's.

Nothing of the control plane is there: not the data dir, the database, tokens, logs,
HAProxy's sockets, or other services' files. Its output goes to its log through the pipes
the supervisor opened. The layout mirrors the curated runtime images (``HOME=/home/sos``,
``SHIV_ROOT=/home/sos/.shiv``, an unprivileged user), so an artifact that runs here runs
there.

``none`` (single tenant): instances run as the server's own user with no isolation; only
the clean interpreter is kept. The server says so at start; use it only where every
deployer is trusted (a laptop).

Signals: the supervisor signals an instance's process group. ``bwrap`` itself ignores
SIGTERM (``env --ignore-signal``) so that it lives until the app has finished its graceful
stop and reports the app's exit code; the app gets SIGTERM with its default disposition
back. SIGKILL ends the whole sandbox.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import venv
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sos.errors import ValidationError
from sos.models import ConfigFile

__all__ = [
    "DEFAULT_PROCESSES",
    "DEFAULT_TMP_BYTES",
    "MAX_FILE_BYTES",
    "SANDBOXES",
    "Placement",
    "RuntimePython",
    "Sandbox",
    "sandbox_problem",
]

log = logging.getLogger(__name__)

SANDBOXES = ("bubblewrap", "none")
DEFAULT_TMP_BYTES = 256 * 2**20
DEFAULT_PROCESSES = 512
#: the largest file an instance, or its log writer, may write (RLIMIT_FSIZE): logs rotate
#: at 10 MiB
MAX_FILE_BYTES = 256 * 2**20

#: service uids: far above system and login users, ``nobody`` and the usual subuid ranges
#: (100000 up); each server (data dir) takes its own block of them
UID_FIRST = 1_000_000_000
UID_BLOCK = 65_536
UID_BLOCKS = 10_000

HOME = PurePosixPath("/home/sos")
SHIV_INSIDE = HOME / ".shiv"
ARTIFACT_INSIDE = PurePosixPath("/sos/artifact")
PYTHON_INSIDE = PurePosixPath("/sos/python")
CONFIG_INSIDE = PurePosixPath("/sos/config")
TOOLS = ("bwrap", "setpriv", "prlimit", "env")
#: what a sandboxed instance keeps of the environment it is given (the rest it gets new)
SANDBOX_DROPS = frozenset({"HOME", "USER", "LOGNAME", "TMPDIR", "PATH", "SSL_CERT_FILE"})


class RuntimePython:
    """A clean Python: a virtualenv of the server's base interpreter with no packages, so an
    artifact imports only what it carries (the runtime image's Python is as bare)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.version = f"{sys.version_info.major}.{sys.version_info.minor}"
        base = getattr(sys, "_base_executable", None) or sys.executable
        self.base_executable = Path(base).resolve()
        self.base_prefix = Path(sys.base_prefix).resolve()

    @property
    def executable(self) -> Path:
        return self.dir / "bin" / "python3"

    def ensure(self) -> None:
        """Create the virtualenv (once; again when the server's Python changed)."""
        config = self.dir / "pyvenv.cfg"
        wanted = f"home = {self.base_executable.parent}"
        with contextlib.suppress(OSError):
            if wanted in config.read_text().splitlines() and self.executable.exists():
                return
        builder = venv.EnvBuilder(clear=True, symlinks=True, with_pip=False)
        builder.create(self.dir)
        self.dir.chmod(0o755)


@dataclass(frozen=True)
class Placement:
    """How one instance (or prepare step) of a service is started: the argv and
    environment, and where its service's packages unpack, seen from the server."""

    argv: list[str]
    env: dict[str, str]


class Sandbox:
    """Allocates service uids and wraps commands in the chosen isolation."""

    def __init__(
        self,
        runtime_dir: Path,
        kind: str = "bubblewrap",
        *,
        tmp_bytes: int = DEFAULT_TMP_BYTES,
        processes: int = DEFAULT_PROCESSES,
    ) -> None:
        if kind not in SANDBOXES:
            raise ValidationError(f"sandbox {kind!r} is unknown: use bubblewrap or none")
        self.kind = kind
        self.dir = runtime_dir / "sandbox"
        self.tmp_bytes = tmp_bytes
        self.processes = processes
        self.python = RuntimePython(runtime_dir / "python")
        self._file = self.dir / "uids.json"
        self._runtime = runtime_dir.resolve()
        #: this server's block of uids (claimed at start: no two servers share one)
        self._first_uid = UID_FIRST
        self._next = 0
        self._uids: dict[str, int] = {}

    # ---- set-up

    def start(self) -> None:
        """Make the runtime Python and read the uid table (call once, before deploys)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o711)  # the services' dirs below are reachable, the table is not
        self.python.ensure()
        if self.kind != "none":
            self._first_uid = UID_FIRST + claim_uid_block(self._runtime)
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads(self._file.read_text())
            self._next = int(saved["next"])
            self._uids = {str(k): int(v) for k, v in dict(saved["services"]).items()}

    def describe(self) -> str:
        """What isolation is in force, for the server's start-up line and status."""
        python = f"Python {self.python.version} from a clean virtualenv"
        if self.kind == "none":
            return (
                "NOT sandboxed (sandbox=none, single tenant): instances run as the server's "
                f"own user and can read its data dir; {python}"
            )
        return (
            "sandboxed by bubblewrap: a uid per service, no capabilities, no new privileges, "
            "own PID/IPC/UTS namespaces, read-only system, no access to the data dir; "
            f"/tmp and home {self.tmp_bytes // 2**20} MiB each, {self.processes} processes "
            f"per service; {python}"
        )

    # ---- services

    def uid(self, service: str) -> int | None:
        """The uid the instances of ``service`` run as (None when not sandboxed)."""
        if self.kind == "none":
            return None
        uid = self._uids.get(service)
        if uid is None:
            if self._next >= UID_BLOCK:
                raise ValidationError("this server has used all of its service uids")
            uid = self._first_uid + self._next
            self._next += 1
            self._uids[service] = uid
            self._save()
        return uid

    def shiv_root(self, service: str) -> Path:
        """Where the Python packages of ``service``'s artifacts unpack (seen from the
        server); owned by the service's uid, read-only to its instances."""
        uid = self.uid(service)
        root = self.dir / f"{service}-{uid if uid is not None else 'shared'}" / "shiv"
        if not root.is_dir():
            root.mkdir(parents=True)
            root.parent.chmod(0o711 if uid is not None else 0o700)
            if uid is not None:
                os.chown(root, uid, uid)
                root.chmod(0o755)
        return root

    def config_dir(self, service: str, revision: str, files: list[ConfigFile]) -> Path:
        """The revision's config files written out (once; read-only to its instances, at
        ``/sos/config`` in the sandbox), seen from the server."""
        root = self.shiv_root(service).parent / "config" / revision
        if not root.is_dir():
            tmp = root.with_name(root.name + ".tmp")
            shutil.rmtree(tmp, True)
            for file in files:
                target = tmp / file.path
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
                target.write_text(file.content)
                target.chmod(0o444)
            tmp.mkdir(parents=True, exist_ok=True)
            for folder in [tmp, *(d for d in tmp.rglob("*") if d.is_dir())]:
                folder.chmod(0o755)
            tmp.parent.chmod(0o755)
            tmp.replace(root)
        return root

    def forget(self, service: str) -> None:
        """A deleted service: its files go, and its uid is never used again."""
        uid = self._uids.pop(service, None)
        shutil.rmtree(self.dir / f"{service}-{uid if uid is not None else 'shared'}", True)
        if uid is not None:
            self._save()

    def _save(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"next": self._next, "services": self._uids}, indent=1))
        tmp.replace(self._file)

    # ---- commands

    def artifact_path(self, path: Path) -> Path:
        """Where the instance sees the artifact stored at ``path``."""
        if self.kind == "none":
            return path
        return Path(ARTIFACT_INSIDE / path.name)

    def unpacked_path(self, service: str, unpacked: Path) -> Path:
        """Where the service's sandbox sees ``unpacked``, a directory of its shiv root."""
        if self.kind == "none":
            return unpacked
        return Path(SHIV_INSIDE / unpacked.relative_to(self.shiv_root(service)))

    def python_executable(self) -> str:
        if self.kind == "none":
            return str(self.python.executable)
        return str(PYTHON_INSIDE / "bin" / "python3")

    def wrap(
        self,
        service: str,
        argv: list[str],
        env: Mapping[str, str],
        artifact: Path,
        *,
        language: str,
        preparing: bool = False,
        config: Path | None = None,
        network: tuple[int, int] | None = None,
    ) -> Placement:
        """``argv`` (written with ``artifact_path`` and ``python_executable``) as it
        runs in this isolation, with ``env`` adjusted to it. With ``network`` (two
        descriptors: where bwrap reports its namespace, and where it waits to be let go),
        it gets a network namespace of its own (``sos.runtime.local.network``)."""
        shiv = self.shiv_root(service) if language == "python" else None
        env = dict(env)
        if self.kind == "none":
            if config is not None:
                env["SOS_CONFIG_DIR"] = str(config)
            if shiv is not None:
                env["SHIV_ROOT"] = str(shiv)
            if language == "python":
                env["PATH"] = f"{self.python.executable.parent}:{env.get('PATH', '/usr/bin:/bin')}"
            return Placement(argv, env)
        uid = self.uid(service)
        assert uid is not None
        env = {k: v for k, v in env.items() if k not in SANDBOX_DROPS}
        path = "/usr/local/bin:/usr/bin:/bin"
        env.update(HOME=str(HOME), USER="sos", LOGNAME="sos", TMPDIR="/tmp")
        wrapped = [
            "env",
            "--ignore-signal=TERM",
            "bwrap",
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-uts",
            "--unshare-cgroup-try",
            *(
                []
                if network is None
                else ["--unshare-net", "--info-fd", str(network[0]), "--block-fd", str(network[1])]
            ),
            "--hostname",
            service[:63],
            *_system(),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            *_tmpfs("/tmp", self.tmp_bytes),
            *_tmpfs("/dev/shm", self.tmp_bytes),
            *_tmpfs(str(HOME), self.tmp_bytes),
            "--symlink",
            "../tmp",
            "/var/tmp",
            *_bind(artifact, PurePosixPath(self.artifact_path(artifact))),
        ]
        if shiv is not None:
            wrapped += _bind(shiv, SHIV_INSIDE, writable=preparing)
            env["SHIV_ROOT"] = str(SHIV_INSIDE)
        if config is not None:
            wrapped += _bind(config, CONFIG_INSIDE)
            env["SOS_CONFIG_DIR"] = str(CONFIG_INSIDE)
        if language == "python":
            prefix = self.python.base_prefix
            if not prefix.is_relative_to("/usr"):
                wrapped += _bind(prefix, PurePosixPath(prefix))
            wrapped += _bind(self.python.dir, PYTHON_INSIDE)
            path = f"{PYTHON_INSIDE}/bin:{path}"
        else:
            wrapped += _runtime_outside_usr(argv[0])
        env["PATH"] = path
        wrapped += [
            "--chdir",
            str(HOME),
            "--",
            "env",
            "--default-signal=TERM",
            "prlimit",
            f"--nproc={self.processes}",
            # no file it writes grows past this: its own log files above all, which it could
            # otherwise fill the disk through (by taking its stdout with pidfd_getfd, say)
            *([] if preparing else [f"--fsize={MAX_FILE_BYTES}"]),
            "--",
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
            *argv,
        ]
        return Placement(wrapped, env)


#: which server (runtime dir) holds which block of service uids, for every server here
UID_BLOCKS_FILE = Path(os.environ.get("SOS_UID_BLOCKS_FILE", "/var/lib/sos/uid-blocks.json"))


def claim_uid_block(runtime_dir: Path, registry: Path | None = None) -> int:
    """The block of service uids of the server whose runtime dir is ``runtime_dir``: the one
    it holds, else a free one (its data dir's hash, or the next free after it), recorded in
    a registry of this machine under a lock, so that two servers on one host never run
    services as the same uid. Blocks of data dirs that are gone are freed."""
    registry = registry or UID_BLOCKS_FILE
    registry.parent.mkdir(parents=True, exist_ok=True)
    mine = str(runtime_dir)
    with open(registry.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        claims: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError, AttributeError):
            saved = json.loads(registry.read_text())
            claims = {str(k): int(v) for k, v in dict(saved).items() if Path(str(k)).is_dir()}
        block = claims.get(mine)
        if block is None:
            taken = set(claims.values())
            if len(taken) >= UID_BLOCKS:
                raise ValidationError("every block of service uids is taken on this machine")
            block = zlib.crc32(mine.encode()) % UID_BLOCKS
            while block in taken:
                block = (block + 1) % UID_BLOCKS
            claims[mine] = block
        tmp = registry.with_suffix(".tmp")
        tmp.write_text(json.dumps(claims, indent=1, sort_keys=True))
        tmp.replace(registry)
        return block


def _system() -> list[str]:
    """The machine's system, read-only: /usr and /etc, and the top-level links into /usr
    (Debian's merged /usr) or the directories themselves where they are not links."""
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32"):
        top = Path("/") / name
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            args += ["--ro-bind", str(top), str(top)]
    return args


def _tmpfs(where: str, size: int) -> list[str]:
    return ["--perms", "1777", "--size", str(size), "--tmpfs", where]


def _bind(source: Path, inside: PurePosixPath, *, writable: bool = False) -> list[str]:
    """Bind ``source`` at ``inside``, its parent directories readable (bwrap makes them
    0700 otherwise, which the service's uid could not pass)."""
    args: list[str] = []
    for parent in reversed(inside.parents):
        if str(parent) not in ("/", "/usr", "/etc", "/tmp", str(HOME)) and not (
            parent.is_relative_to("/usr") or parent.is_relative_to(HOME)
        ):
            args += ["--perms", "0755", "--dir", str(parent)]
    return [*args, "--bind" if writable else "--ro-bind", str(source), str(inside)]


def _runtime_outside_usr(program: str) -> list[str]:
    """A runtime installed outside /usr (node from nvm, a JDK in /opt): its prefix,
    read-only, at the same path."""
    found = shutil.which(program)
    if found is None or not os.path.isabs(program):
        return []
    real = Path(found).resolve()
    if real.is_relative_to("/usr") or real.parent.name != "bin":
        return []
    prefix = real.parent.parent
    return _bind(prefix, PurePosixPath(prefix))


def sandbox_problem() -> str | None:
    """Why bubblewrap sandboxes cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "the server does not run as root, so it cannot run each service as a user of its own"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found (Debian: apt-get install bubblewrap util-linux)"
    try:
        done = subprocess.run(
            [
                "bwrap",
                "--unshare-pid",
                *_system(),
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "--",
                "setpriv",
                f"--reuid={UID_FIRST}",
                f"--regid={UID_FIRST}",
                "--clear-groups",
                "--",
                "true",
            ],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not be run: {exc}"
    if done.returncode != 0:
        return f"bwrap cannot make a sandbox here: {done.stderr.decode(errors='replace').strip()}"
    return None
