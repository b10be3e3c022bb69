"""A deployed app that attacks the platform it runs on, from inside its instance.

``GET /`` answers ``probe``; ``GET /via-router`` answers what the victim service says
through the router (``$SOS_ROUTER_URL``); ``GET /attack`` tries what a hostile
tenant would (paths of the server it knows from ``PROBE_DATA_DIR``, the server's data dir,
and addresses on its loopback) and answers, per attack, what it got:
``{"attack": ..., "held": bool, "saw": ...}``. Standard library only.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

Result = dict[str, object]


def attempt(name: str, action: Callable[[], str]) -> Result:
    """Run one attack: it broke through when ``action`` returns, held when it raised."""
    try:
        saw = action()
    except Exception as exc:  # the platform held: say how
        return {"attack": name, "held": True, "saw": f"{type(exc).__name__}: {exc}"[:300]}
    return {"attack": name, "held": False, "saw": saw[:2000]}


def status_field(name: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return "?"


def must(condition: bool, saw: str) -> str:
    """Held unless ``condition``: then the attack got ``saw``."""
    if not condition:
        raise PermissionError(saw)
    return saw


def read_environs() -> str:
    """Every other service's environment this process can read from /proc."""
    own = f"SOS_SERVICE={os.environ.get('SOS_SERVICE')}\0"
    pids = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != os.getpid()]
    others = []
    for pid in pids:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace") + "\0"
        except OSError:
            continue
        if "SOS_SERVICE=" in env and own not in env:
            others.append(env)
    if not others:
        raise PermissionError(f"{len(pids) + 1} processes in sight, none of another service")
    return " | ".join(others)


def fill_tmp() -> str:
    """Write 300 MiB into /tmp: the platform's disk must not be there to fill."""
    chunk = b"x" * 2**20
    written = 0
    with open("/tmp/filler", "wb") as handle:
        try:
            for _ in range(300):
                handle.write(chunk)
                handle.flush()
                written += 1
        except OSError as exc:
            os.unlink("/tmp/filler")
            if exc.errno == errno.ENOSPC:
                raise OSError(f"no space left after {written} MiB") from None
            raise
    os.unlink("/tmp/filler")
    return f"wrote {written} MiB"


def rewrite_log() -> str:
    """Truncate its own stdout, as an intruder hides what it printed before."""
    print("probe: a line the platform must keep", flush=True)
    os.ftruncate(1, 0)
    return "truncated its own log"


def fill_log() -> str:
    """Write 300 MiB to its own stdout, which ends in a log file on the platform's disk."""
    chunk = b"x" * 2**20
    written = 0
    try:
        for _ in range(300):
            os.write(1, chunk)
            written += 1
    except OSError as exc:
        raise OSError(f"stopped after {written} MiB: {exc.strerror}") from None
    return f"wrote {written} MiB into its log"


def many_threads() -> str:
    """Start up to 2000 threads (a fork bomb's little sister); all are released after."""
    release = threading.Event()
    started = 0
    threading.stack_size(64 * 1024)
    threads = []
    try:
        for _ in range(2000):
            thread = threading.Thread(target=release.wait, daemon=True)
            thread.start()
            threads.append(thread)
            started += 1
    except RuntimeError as exc:
        raise RuntimeError(f"stopped after {started} threads: {exc}") from None
    finally:
        release.set()
        for thread in threads:
            thread.join()
    return f"started {started} threads"


def write_system() -> str:
    target = Path(f"/usr/lib/sos-probe-{os.getpid()}")
    target.write_text("x")
    target.unlink()  # it broke through: leave the machine as it was
    return f"wrote {target}"


def admin_socket(path: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(b"show servers state\n")
        return sock.recv(4096).decode(errors="replace")


def connect(address: str) -> str:
    """Open a TCP connection to ``host:port``; a second try after a time-out (the first SYN
    to a link-local address can be lost while the neighbour is being resolved)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return f"connected to {address}"
    except TimeoutError:
        with socket.create_connection((host, int(port)), timeout=3):
            return f"connected to {address} (second try)"


def send_udp(address: str) -> str:
    """Send one UDP datagram to ``host:port``."""
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"probe", (host, int(port)))
        return f"sent a datagram to {address}"


def via_router() -> bytes:
    """What the victim answers through the router, as any client reaches it: at
    ``$SOS_ROUTER_URL``, which the platform gives every instance."""
    router = urlsplit(os.environ["SOS_ROUTER_URL"])
    victim = os.environ.get("PROBE_VICTIM", "victim")
    with socket.create_connection((router.hostname, router.port), timeout=5) as sock:
        sock.sendall(f"GET / HTTP/1.0\r\nHost: {victim}.localhost\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.partition(b"\r\n\r\n")[2]


#: attacks on the network: what to send, to the address in which environment variable
NETWORK_ATTACKS: list[tuple[str, Callable[[str], str], str]] = [
    ("connect to the SOS API on the host's loopback", connect, "PROBE_API"),
    (
        "connect to another team's instance directly, past the router",
        connect,
        "PROBE_VICTIM_INSTANCE",
    ),
    (
        "connect to the host's services on all addresses, by its IPv6 link-local address",
        connect,
        "PROBE_HOST_LINK_LOCAL",
    ),
    ("send UDP to the host's services on all addresses, by multicast", send_udp, "PROBE_MULTICAST"),
]


def attacks() -> list[Result]:
    data = Path(os.environ.get("PROBE_DATA_DIR", "/nonexistent"))
    victim_logs = data / "runtime" / "logs" / os.environ.get("PROBE_VICTIM", "victim")
    return [
        attempt("run as root", lambda: must(os.getuid() == 0, f"uid {os.getuid()}")),
        attempt(
            "hold a capability",
            lambda: must(int(status_field("CapEff"), 16) != 0, status_field("CapEff")),
        ),
        attempt(
            "gain privileges (setuid programs)",
            lambda: must(status_field("NoNewPrivs") != "1", status_field("NoNewPrivs")),
        ),
        attempt("read the admin token", lambda: (data / "admin-token").read_text()),
        attempt("read the database", lambda: (data / "sos.db").read_bytes()[:100].hex()),
        attempt("list the data dir", lambda: " ".join(os.listdir(data))),
        attempt("read another team's environment in /proc", read_environs),
        attempt(
            "write a fake traceback into another team's logs",
            lambda: f"wrote {(victim_logs / 'injected.log').write_text('Traceback: fake')} bytes",
        ),
        attempt(
            "reach HAProxy's admin socket",
            lambda: admin_socket(os.environ.get("PROBE_ADMIN_SOCKET", str(data / "admin.sock"))),
        ),
        *(
            attempt(name, lambda send=send, at=at: send(os.environ.get(at, "127.0.0.1:1")))
            for name, send, at in NETWORK_ATTACKS
        ),
        attempt("write into the system", write_system),
        attempt("fill the disk through /tmp (300 MiB)", fill_tmp),
        attempt("erase its own log (truncate stdout)", rewrite_log),
        attempt("fill the disk through its own log (300 MiB to stdout)", fill_log),
        attempt("start 2000 threads", many_threads),
        attempt(
            "import the server's packages (not declared by this app)",
            lambda: ", ".join(
                f"{name} from {importlib.import_module(name).__file__}"
                for name in ("fastapi", "sos", "pydantic")
            ),
        ),
    ]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/env":
            body = json.dumps(dict(os.environ)).encode()
        elif self.path == "/config":  # the config files the platform gave this revision
            root = Path(os.environ.get("SOS_CONFIG_DIR", "/nonexistent"))
            found = {
                str(f.relative_to(root)): f.read_text() for f in root.rglob("*") if f.is_file()
            }
            body = json.dumps(found).encode()
        elif self.path == "/via-router":  # not an attack: what every client may do
            body = via_router()
        elif self.path == "/attack":
            body = json.dumps(
                {
                    "uid": os.getuid(),
                    "python": sys.executable,
                    "path": sys.path,
                    "results": attacks(),
                }
            ).encode()
        else:
            body = b"probe\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    # a file grown past the platform's limit is then an error (EFBIG), not the probe's death
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    host = os.environ.get("HOST", "127.0.0.1")
    ThreadingHTTPServer((host, int(os.environ["PORT"])), Handler).serve_forever()


main()
