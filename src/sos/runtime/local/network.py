"""Each sandboxed instance's own network, as a container has: a network namespace of its own
(``bwrap --unshare-net``), connected to the host by pasta (Debian ``passt``).

- **In**: pasta listens on the host's loopback at the instance's port (what the router, the
  activator and the probes use) and forwards each connection to the app's port inside: the
  revision's ``port``, else 8080, as on Knative. Two instances, or two services, may listen
  on the same port: each has its own loopback.
- **Out**: pasta carries the instance's connections out through the host's own sockets, to
  anywhere but the host itself: ``--no-map-gw`` (no address inside leads to the host's
  loopback), and nftables rules in the namespace (``egress_rules``) that drop what is
  addressed to any of the host's addresses, to link-local IPv6, to multicast or to
  broadcast (pasta would deliver those to the host's own services on all addresses).
  DNS is the host's ``/etc/resolv.conf``; a resolver on the host's loopback (127.0.0.53) is
  out of reach.
- **Nothing of the host's loopback** is the instance's: the SOS API, other instances'
  ports, HAProxy's stats, a database listening on 127.0.0.1 are not in reach. The one
  exception is the router, forwarded in (``-T``) at a port of its own inside,
  ``127.0.0.1:8012`` (``$SOS_ROUTER_URL``; a port no revision may choose, so the app's
  port never collides with it), so that an instance calls other services through the
  router like any client, with the service's ``Host``.

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
import ipaddress
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
    "ROUTER_PORT_INSIDE",
    "Attached",
    "Network",
    "NetworkError",
    "egress_rules",
    "host_addresses",
    "network_problem",
]

log = logging.getLogger(__name__)

NETWORKS = ("private", "host")
#: the port an app listens on inside its namespace when its revision names none (Knative's)
APP_PORT = 8080
#: where an instance reaches the router inside its network (reserved: no revision's port)
ROUTER_PORT_INSIDE = 8012
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
    missing = [tool for tool in ("pasta", "nft", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        return (
            f"{', '.join(missing)} not found (Debian: apt-get install passt nftables "
            "util-linux iproute2)"
        )
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
        #: the router's port on the host's loopback, reached inside at ROUTER_PORT_INSIDE
        #: (set at start, once the router listens)
        self.router_port: int | None = None

    @property
    def private(self) -> bool:
        return self.kind == "private"

    def describe(self) -> str:
        if self.private:
            return (
                "a network of its own per instance (pasta: in through its port, out to "
                f"anywhere but the host; the router at 127.0.0.1:{ROUTER_PORT_INSIDE} inside)"
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
                        (
                            f"{ROUTER_PORT_INSIDE}:{self.router_port}"
                            if self.router_port
                            else "none"
                        ),
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
            _filter(path, host_addresses())
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
        stale = [p for p in self.dir.iterdir() if p.suffix != ".log" and p not in keep]
        if not stale:
            return
        wanted = {str(path).encode() for path in stale}
        for pid, argv in _pastas():  # one look through /proc for all of them
            if wanted & set(argv):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
        for path in stale:
            self.detach(Attached(0, path))


def host_addresses() -> list[str]:
    """Every address of this machine's interfaces (``ip -json addr``)."""
    done = subprocess.run(
        ["ip", "-json", "addr"], capture_output=True, text=True, timeout=10, check=False
    )
    if done.returncode != 0:
        raise NetworkError(f"cannot list the host's addresses: {done.stderr.strip()[:200]}")
    found = []
    for interface in json.loads(done.stdout or "[]"):
        for address in interface.get("addr_info", []):
            local = address.get("local")
            if isinstance(local, str) and local:
                found.append(local)
    return found


def egress_rules(addresses: list[str]) -> str:
    """The nftables rules of an instance's namespace: what leaves it through pasta may go
    anywhere but to the host. pasta makes its connections from the host's own sockets, so
    a destination that is one of the host's addresses (the ones not copied into the
    namespace: a second interface, a bridge, its IPv6 link-local address), multicast or
    broadcast, would reach services the host listens for on all addresses. Loopback
    (the instance itself, and pasta's forwarding in) and ICMPv6 (neighbour discovery)
    pass."""
    v4 = sorted({a for a in addresses if ":" not in a and not a.startswith("127.")})
    # (link-local ones are in fe80::/10 already: a set may not hold both)
    v6 = sorted({a for a in addresses if ":" in a and a != "::1" and not _link_local(a)})
    v4_set = ", ".join(["224.0.0.0/4", "255.255.255.255", *v4])
    v6_set = ", ".join(["ff00::/8", "fe80::/10", *v6])
    return (
        "table inet sos {\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        '    oifname "lo" accept\n'
        "    meta l4proto ipv6-icmp accept\n"
        # refused at once (a TCP reset: a dropped SYN would hang the caller until its
        # timeout), other protocols told "prohibited"
        f"    ip daddr {{ {v4_set} }} meta l4proto tcp reject with tcp reset\n"
        f"    ip daddr {{ {v4_set} }} reject with icmpx type admin-prohibited\n"
        f"    ip6 daddr {{ {v6_set} }} meta l4proto tcp reject with tcp reset\n"
        f"    ip6 daddr {{ {v6_set} }} reject with icmpx type admin-prohibited\n"
        "  }\n"
        "}\n"
    )


def _link_local(address: str) -> bool:
    return ipaddress.ip_address(address.split("%")[0]).is_link_local


def _filter(netns: Path, addresses: list[str]) -> None:
    """Load ``egress_rules`` into the namespace bound at ``netns`` (before its app runs;
    the app, without capabilities, cannot change them)."""
    done = subprocess.run(
        ["nsenter", f"--net={netns}", "nft", "-f", "-"],
        input=egress_rules(addresses),
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if done.returncode != 0:
        raise NetworkError(f"cannot filter its egress (nft): {done.stderr.strip()[:300]}")


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


def _pastas() -> list[tuple[int, list[bytes]]]:
    """Every pasta process running, with its argv."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if argv and argv[0].endswith(b"pasta"):
                    found.append((int(entry), argv))
    return found


def _is_pasta(pid: int, netns: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"pasta") and str(netns).encode() in argv
