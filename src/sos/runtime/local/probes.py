"""HTTP and TCP probes of an instance, the way a kubelet does them (on the event loop)."""

from __future__ import annotations

import asyncio

__all__ = ["probe"]


async def probe(host: str, port: int, path: str | None, seconds: float) -> tuple[bool, str]:
    """GET ``path`` (any 2xx/3xx is healthy), or only connect when ``path`` is None.

    Returns (healthy, what happened) so that a failure can be told to the user.
    """
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_connection(host, port)
            if path is None:
                return True, "port open"
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: sos-probe\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            line = await reader.readline()
    except TimeoutError:
        return False, f"no answer to GET {path} within {seconds:g}s"
    except OSError as exc:
        return False, f"cannot connect to port {port}: {exc.strerror or exc}"
    finally:
        if writer is not None:
            writer.close()
    parts = line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f"GET {path} got no HTTP answer"
    status = int(parts[1])
    if 200 <= status < 400:
        return True, f"GET {path} -> {status}"
    return False, f"GET {path} -> HTTP {status}"
