"""HAProxy's processes: starting one, stopping one, and the handover between servers.

HAProxy outlives a server that stops with ``keep_serving`` (or dies): the state
directory's pid file (``STATE_FILE``) names it, and the next server of that directory
adopts it (``adoptable``): it takes a copy of its listening socket (``take_listener``,
pidfd_getfd(2)), lets it serve until its own HAProxy has the table, and then replaces it
(``-sf``: the old one finishes its requests and exits). Where the socket cannot be taken
(ptrace restricted), the old one is soft-stopped and the port bound anew
(``rebind_after``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sos.errors import BackendError
from sos.runtime.local.ingress.haproxy.api import HAProxyError, RuntimeAPI
from sos.runtime.local.ingress.listen import listen_socket
from sos.runtime.local.procs import alive

__all__ = [
    "STATE_FILE",
    "HAProxyProcess",
    "adoptable",
    "rebind_after",
    "spawn",
    "take_listener",
    "write_state",
]

log = logging.getLogger(__name__)

#: the file in the state directory that names the running HAProxy (pid and directory)
STATE_FILE = "haproxy.json"
#: how long a new HAProxy has to answer on its stats socket
START_TIMEOUT = 15.0


@dataclass
class HAProxyProcess:
    """A HAProxy process: one this server started (``popen``), or one it adopted."""

    pid: int
    popen: subprocess.Popen[bytes] | None = None
    #: instances this process may still send requests to (for a process being replaced)
    instances: frozenset[str] = frozenset()

    @property
    def running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return alive(self.pid)

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (HAProxy's hard stop), SIGKILL after ``grace`` seconds."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            for _ in range(round(grace / 0.02)):
                if not self.running:
                    return
                await asyncio.sleep(0.02)


def rebind_after(pid: int, host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """Soft-stop HAProxy ``pid`` (SIGUSR1: it closes its listeners and finishes what it
    serves) and bind ``host:port`` once it is free (SIGTERM after ``timeout`` seconds)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return listen_socket(host, port)
        except BackendError:
            if time.monotonic() > deadline + timeout:
                raise
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            time.sleep(0.02)


def adoptable(state_dir: Path) -> tuple[int, Path, int] | None:
    """The HAProxy a server of this state directory left serving, as (pid, its runtime
    directory), if it still runs. Its pid file names it; ``/proc/PID/cmdline`` must run
    HAProxy with the configuration of that directory: a pid that is gone, or reused by
    another process (another data dir's HAProxy too), is ignored."""
    path = state_dir / STATE_FILE
    try:
        record = json.loads(path.read_text())
        pid, folder, fd = int(record["pid"]), Path(record["dir"]), int(record["fd"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring %s, which is not a HAProxy pid file: %s", path, exc)
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        argv = []
    ours = (
        alive(pid)
        and "haproxy" in os.path.basename(argv[0].decode("utf-8", "replace"))
        and str(folder / "haproxy.cfg").encode() in argv
    )
    if not ours:
        log.info("%s names pid %d, which is not this data dir's HAProxy: ignored", path, pid)
        return None
    return pid, folder, fd


def take_listener(pid: int, fd: int, host: str, port: int) -> socket.socket | None:
    """A copy of the listening socket HAProxy ``pid`` serves on (its descriptor ``fd``),
    taken with pidfd_getfd(2), if it listens on ``host:port`` (port 0: any): the same
    socket, so no connection waiting in it is lost. (HAProxy's own ``_getsocks`` does not
    hand over a socket it inherited.)"""
    pidfd = os.pidfd_open(pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        got = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd
        if got < 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    finally:
        os.close(pidfd)
    sock = socket.socket(fileno=got)
    try:
        address = sock.getsockname()
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening, address = 0, ("", 0)
    if listening and address[0] == host and port in (0, address[1]):
        sock.setblocking(False)
        return sock
    sock.close()
    return None


def write_state(state_dir: Path, record: dict[str, object]) -> None:
    """Name the HAProxy that serves now in ``state_dir`` (atomically)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record) + "\n")
    os.replace(temporary, path)


async def spawn(
    haproxy: str,
    config: Path,
    listen_fd: int,
    api: RuntimeAPI,
    *,
    replace: int = 0,
    detached: bool,
    relays: set[asyncio.Task[list[str]]],
    clock: Callable[[], float] = time.monotonic,
) -> HAProxyProcess:
    """Start HAProxy with ``config``, serving on the inherited ``listen_fd``, and wait until
    it answers on its stats socket. ``replace``: the pid it takes over from (``-sf``, a
    seamless reload). ``detached``: it outlives this process (to be adopted); else it dies
    with it. Its output is logged by a task added to ``relays``."""
    argv = [haproxy, "-db", "-f", str(config)]
    if replace:
        argv += ["-sf", str(replace)]
    # a plain Popen: asyncio's transport would kill a HAProxy left serving on exit
    popen = await asyncio.to_thread(
        subprocess.Popen,
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        pass_fds=(listen_fd,),
        preexec_fn=_detach if detached else _die_with_parent,
    )
    process = HAProxyProcess(popen.pid, popen)
    assert popen.stdout is not None
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), popen.stdout)
    output = asyncio.create_task(_relay(reader))
    relays.add(output)
    output.add_done_callback(relays.discard)
    deadline = clock() + START_TIMEOUT
    while True:
        try:
            if await api.serves(popen.pid):
                return process
        except (OSError, HAProxyError):
            pass
        if not process.running or clock() > deadline:
            await process.stop(grace=0)
            lines = await output
            raise HAProxyError("HAProxy did not start: " + (" ".join(lines[-5:]) or "no output"))
        await asyncio.sleep(0.02)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """HAProxy without a state directory ends with the process that started it
    (PR_SET_PDEATHSIG): nothing could adopt it."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    os.setpgrp()


def _detach() -> None:  # pragma: no cover - runs in the child
    """HAProxy outlives a server that dies (the next one adopts it): its own process
    group (a Ctrl-C of the server's terminal is the server's to handle), and writes to its
    output pipe after the server is gone fail instead of killing it (SIGPIPE ignored)."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    os.setpgrp()


async def _relay(stream: asyncio.StreamReader) -> list[str]:
    """Log HAProxy's own output (alerts and warnings); the lines, when it ends."""
    lines: list[str] = []
    async for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        lines = [*lines[-20:], line]
        ours = " CLI : " in line or "stopped (cumulated conns" in line  # reloads, API calls
        if ("[ALERT]" in line or "[WARNING]" in line) and not ours:
            log.warning("haproxy: %s", line)
        else:
            log.debug("haproxy: %s", line)
    return lines
