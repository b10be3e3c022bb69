"""Each sandboxed instance's own network, as a container has: a network namespace of its own
(``bwrap --unshare-net``), connected to the host by pasta (Debian ``passt``).

- **In**: pasta listens on the host's loopback at the instance's port (what the router, the
  activator and the probes use) and forwards each connection to the app's port inside: the
  revision's ``port``, else 8080, as on Knative. Two instances, or two services, may listen
  on the same port: each has its own loopback.
- **Out**: pasta carries the instance's connections out through the host's own sockets, to
  anywhere but the host itself (``--no-map-gw``: no address inside leads to the host's
  loopback). DNS is the host's ``/etc/resolv.conf``; a resolver on the host's loopback
  (127.0.0.53) is out of reach.
- **Nothing of the host's loopback** is the instance's: the SOS API, other instances'
  ports, HAProxy's stats, a database listening on 127.0.0.1 are not in reach. The one
  exception is the router's port, forwarded in (``-T``), so that an instance calls other
  services through the router like any client: ``http://127.0.0.1:<router port>/`` with the
  service's ``Host``.

How an instance starts: bwrap makes the namespace and reports its first process
(``--info-fd``), then holds the app (``--block-fd``) while the supervisor binds the
namespace to a file under ``<runtime>/netns/`` and starts pasta on it; once pasta forwards
the port, the app is let go. pasta runs as root but isolates itself (no capabilities left,
seccomp, an empty mount namespace) and is stopped, and the namespace file removed, when
the instance ends; a server restart finds both again in ``instances.json``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sos.errors import SOSError

__all__ = [
    "APP_PORT",
    "NETWORKS",
    "Attached",
    "Network",
    "NetworkError",
    "network_problem",
]

log = logging.getLogger(__name__)

NETWORKS = ("private", "host")
#: the port an app listens on inside its namespace when its revision names none (Knative's)
APP_PORT = 8080
#: how long bwrap may take to report its namespace, and pasta to forward the port
ATTACH_TIMEOUT = 10.0

_MS_BIND = 4096
_MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class NetworkError(SOSError):
    """An instance's network could not be set up (the reason says what failed)."""


@dataclass
class Attached:
    """An instance's network: its pasta process and the file its namespace is bound to."""

    pasta: int
    netns: Path
    process: subprocess.Popen[bytes] | None = None

    def record(self) -> dict[str, object]:
        return {"pasta": self.pasta, "netns": str(self.netns)}


def network_problem() -> str | None:
    """Why private networks cannot be made here, or None when they can."""
    if shutil.which("pasta") is None:
        return "pasta not found (Debian: apt-get install passt)"
    if os.geteuid() != 0:
        return "the server does not run as root"
    return None


class Network:
    """Makes and removes the instances' namespaces (``private``), or nothing (``host``)."""

    def __init__(self, runtime_dir: Path, kind: str = "private") -> None:
        if kind not in NETWORKS:
            raise ValueError(f"network {kind!r} is unknown: use private or host")
        self.kind = kind
        self.dir = runtime_dir / "netns"
        #: ports of the host's loopback an instance may reach (the router's), set at start
        self.forward: list[int] = []

    @property
    def private(self) -> bool:
        return self.kind == "private"

    def describe(self) -> str:
        if self.private:
            return (
                "a network of its own per instance (pasta: in through its port, out to "
                "anywhere but the host; of the host's loopback only the router's port)"
            )
        return "the host's network (instances share its loopback)"

    def start(self) -> None:
        if self.private:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.dir.chmod(0o700)

    # ---- one instance

    def attach(
        self, instance: str, info: int, release: int, host_port: int, app_port: int
    ) -> Attached:
        """Connect the namespace of the instance being started (bwrap reports its first
        process on ``info`` and holds the app until ``release`` is written): blocking, run
        it in a thread. Raises ``NetworkError`` saying what failed."""
        deadline = time.monotonic() + ATTACH_TIMEOUT
        child = _child_pid(info, deadline)
        path = self.dir / instance
        path.touch(mode=0o600)
        attached = Attached(0, path)
        try:
            source = f"/proc/{child}/ns/net".encode()
            if _libc.mount(source, str(path).encode(), None, _MS_BIND, None) != 0:
                errno = ctypes.get_errno()
                raise NetworkError(f"cannot bind its network namespace: {os.strerror(errno)}")
            errors = path.with_suffix(".pasta.log")
            with open(errors, "wb") as err:
                process = subprocess.Popen(
                    [
                        "pasta",
                        "--quiet",
                        "--foreground",
                        "--runas",
                        "0:0",
                        "--tcp-ports",
                        f"127.0.0.1/{host_port}:{app_port}",
                        "--udp-ports",
                        "none",
                        "--tcp-ns",
                        ",".join(map(str, self.forward)) or "none",
                        "--udp-ns",
                        "none",
                        "--no-map-gw",
                        "--config-net",
                        "--netns",
                        str(path),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,
                )
            attached.pasta, attached.process = process.pid, process
            _wait_forwarding(process, host_port, errors, deadline)
            errors.unlink(missing_ok=True)
            os.write(release, b"1")  # the app starts now, with its network up
        except BaseException:
            self.detach(attached)
            raise
        return attached

    def detach(self, attached: Attached) -> None:
        """Stop its pasta and remove its namespace's file (what is left of the namespace
        goes with its last process)."""
        if attached.process is not None:
            with contextlib.suppress(ProcessLookupError):
                attached.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                attached.process.wait(timeout=2)
        elif attached.pasta and _is_pasta(attached.pasta, attached.netns):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(attached.pasta, signal.SIGTERM)
        _libc.umount2(str(attached.netns).encode(), _MNT_DETACH)
        attached.netns.unlink(missing_ok=True)
        attached.netns.with_suffix(".pasta.log").unlink(missing_ok=True)

    def sweep(self, keep: set[Path]) -> None:
        """Remove the namespaces (and stop the pastas) of instances that are gone: what a
        server that died left behind."""
        if not self.private or not self.dir.is_dir():
            return
        for path in self.dir.iterdir():
            if path.suffix == ".log" or path in keep:
                continue
            for pid in _pastas_of(path):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
            self.detach(Attached(0, path))


def _child_pid(info: int, deadline: float) -> int:
    """The pid bwrap reports for its namespace (``--info-fd``: a JSON object)."""
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([info], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(info, 4096)
        if not chunk:
            break
        data += chunk
        with contextlib.suppress(ValueError):
            return int(json.loads(data)["child-pid"])
    raise NetworkError(
        "its sandbox ended (or hung) before making its network namespace"
        + (f" (it said {data[:200]!r})" if data else "")
    )


def _wait_forwarding(
    process: subprocess.Popen[bytes], port: int, errors: Path, deadline: float
) -> None:
    """Until pasta listens on the instance's host port (or says why it cannot)."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = errors.read_text(errors="replace").strip().splitlines()
            said = [line for line in said if "syslog" not in line]
            raise NetworkError(
                f"pasta exited with code {process.returncode}: "
                + ("; ".join(said[-3:]) or "it said nothing")
            )
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.005)
    raise NetworkError(f"pasta did not forward port {port} within {ATTACH_TIMEOUT:g}s")


def _pastas_of(netns: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _is_pasta(int(entry), netns):
            found.append(int(entry))
    return found


def _is_pasta(pid: int, netns: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"pasta") and str(netns).encode() in argv
