"""HTTP and TCP probes of an instance, the way a kubelet does them (on the event loop)."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["probe"]

_NOTHING = "nothing listens on its port yet, or the app dropped the connection"


async def probe(host: str, port: int, path: str | None, seconds: float) -> tuple[bool, str]:
    """GET ``path`` (any 2xx/3xx is healthy), or only connect when ``path`` is None.

    Returns (healthy, what happened) so that a failure can be told to the user.
    """
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_connection(host, port)
            if path is None:
                # through a forwarder (an instance's own network: pasta) a connection opens
                # even when nothing listens behind it, and is closed at once: an open port
                # is one whose connection stays open
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(0.2, seconds / 2)):
                        if not await reader.read(1):
                            return False, f"port {port} closed the connection at once: {_NOTHING}"
                return True, "port open"
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: sos-probe\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            line = await reader.readline()
    except TimeoutError:
        return False, f"no answer to GET {path} within {seconds:g}s"
    except OSError as exc:
        if writer is not None and path is None:  # connected, then cut off
            return False, f"port {port} closed the connection at once: {_NOTHING}"
        if writer is not None:
            return False, f"GET {path}: the connection was reset with no answer ({_NOTHING})"
        return False, f"cannot connect to port {port}: {exc.strerror or exc}"
    finally:
        if writer is not None:
            writer.close()
    if not line:
        return False, f"GET {path}: the connection closed with no answer ({_NOTHING})"
    parts = line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f"GET {path} got no HTTP answer"
    status = int(parts[1])
    if 200 <= status < 400:
        return True, f"GET {path} -> {status}"
    return False, f"GET {path} -> HTTP {status}"
