"""HAProxy's runtime API: commands on its stats socket (``admin.sock`` in its directory).

Each command is a connection of its own; ``command`` checks the answer and raises
``HAProxyError`` when HAProxy refused it. The operations the router needs are named
here: a whole map swapped at once, a server added to or deleted from a slot, the servers'
requests in flight, and the request log as a stream of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from sos.errors import BackendError
from sos.runtime.local.ingress.haproxy.config import Server, map_text

__all__ = ["HAProxyError", "RuntimeAPI"]


class HAProxyError(BackendError):
    """HAProxy refused a command or could not start."""


class RuntimeAPI:
    """The runtime API of the HAProxy whose stats socket is ``socket_path``."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    async def cli(self, command: str, payload: str | None = None) -> str:
        """One command on HAProxy's stats socket; its answer."""
        reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        try:
            text = command + (" <<\n" + payload + "\n" if payload is not None else "\n")
            writer.write(text.encode())
            await writer.drain()
            async with asyncio.timeout(10):
                answer = await reader.read()
        finally:
            writer.close()
        return answer.decode("utf-8", "replace")

    async def command(self, command: str, payload: str | None = None, expect: str = "") -> str:
        answer = await self.cli(command, payload)
        if expect not in answer or "nknown" in answer or "rror" in answer:
            raise HAProxyError(f"HAProxy refused {command!r}: {answer.strip()[:300]}")
        return answer

    async def serves(self, pid: int) -> bool:
        """Whether HAProxy ``pid`` answers on this socket (it started)."""
        return f"Pid: {pid}\n" in await self.cli("show info")

    async def commit_map(self, path: Path, entries: Mapping[str, str]) -> None:
        """Replace every entry of map ``path`` at once (``prepare``, ``add``, ``commit``)."""
        answer = await self.command(f"prepare map {path}", expect="New version created:")
        version = answer.split("New version created:", 1)[1].split()[0]
        if entries:
            await self.command(f"add map @{version} {path}", map_text(entries))
        await self.command(f"commit map @{version} {path}")

    async def add_server(self, slot: str, server: Server) -> None:
        await self.command(
            f"add server {slot}/{server.name} {server.address} weight {server.weight} "
            "pool-max-conn -1 pool-purge-delay 5s",
            expect="New server registered",
        )
        await self.command(f"set server {slot}/{server.name} state ready")

    async def delete_server(self, slot: str, name: str) -> bool:
        """Take a server out of ``slot``; whether it is gone."""
        await self.cli(f"set server {slot}/{name} state maint")
        answer = await self.cli(f"del server {slot}/{name}")
        return "deleted" in answer or "No such server" in answer

    async def in_flight(self) -> dict[tuple[str, str], int] | None:
        """Requests each server serves now: (backend, server) -> count (``scur``); None
        when the answer is not HAProxy's stats."""
        text = await self.cli("show stat -1 4 -1")
        rows = csv.reader(io.StringIO(text.lstrip("# ")))
        header = next(rows, [])
        try:
            px, sv, cur = header.index("pxname"), header.index("svname"), header.index("scur")
        except ValueError:
            return None
        stats = {}
        for row in rows:
            if len(row) > cur and row[cur].isdigit():
                stats[(row[px], row[sv])] = int(row[cur])
        return stats

    async def map_entries(self, path: Path) -> dict[str, str]:
        entries: dict[str, str] = {}
        for line in (await self.cli(f"show map {path}")).splitlines():
            parts = line.split()
            if len(parts) == 3:
                entries[parts[1]] = parts[2]
        return entries

    async def servers(self) -> list[tuple[str, str]]:
        """Every server as (backend, server name)."""
        found = []
        for line in (await self.cli("show servers state")).splitlines():
            parts = line.split()
            if len(parts) > 3 and parts[0].isdigit():
                found.append((parts[1], parts[3]))
        return found

    @contextlib.asynccontextmanager
    async def events(
        self, ring: str
    ) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        """A stream of the events of ``ring`` (waiting for new ones), from now on."""
        reader, writer = await asyncio.open_unix_connection(str(self.socket_path), limit=16 * 2**20)
        try:
            writer.write(f"show events {ring} -w -n\n".encode())
            await writer.drain()
            yield reader, writer
        finally:
            writer.close()
