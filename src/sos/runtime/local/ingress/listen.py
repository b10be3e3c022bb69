"""The ingress's listening socket, taken before the event loop runs (both data paths)."""

from __future__ import annotations

import errno
import socket

from sos.errors import BackendError

__all__ = ["listen_socket"]


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a BackendError that says what to do."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise BackendError(
            f"the router cannot listen on {host}:{port}: {why} (another sos "
            "server?); choose another port with --router-port or SOS_ROUTER_PORT"
        ) from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock
