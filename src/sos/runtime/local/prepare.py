"""Preparing Python artifacts once per digest, before their first instance starts.

A Python artifact built by ``sos build`` is a shiv zipapp: on its very first start shiv
unpacks the packages inside into ``$SHIV_ROOT`` (seconds for a pandas service), and every
later start reuses them. The local runtime therefore gives every instance the same
``SHIV_ROOT`` (``<data dir>/runtime/shiv``), keeps the artifact's file name (the store
names files by digest) and runs ``SOS_PREPARE_ONLY=1 python3 ARTIFACT`` once per digest
when a revision is first deployed, in the background, before its first instance starts.
No instance pays for unpacking, and two instances starting together never race on it.
(The first instance of an artifact still writes the bytecode cache of what it imports,
next to the unpacked packages, about 2 s for a pandas service; later instances reuse it.)

Only artifacts whose shiv entry point is the SOS launcher are prepared (other zipapps do
not know ``SOS_PREPARE_ONLY`` and would start serving instead of exiting). An artifact
whose unpacked directory already exists (a server restart, another revision of the same
artifact) is ready at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

from shiv.bootstrap import cache_path

from sos.runtime.local.logs import LogStore

__all__ = ["PREPARE_TIMEOUT", "Preparer", "unpack_dir"]

log = logging.getLogger(__name__)

#: the shiv entry point of artifacts built by ``sos build`` (it honours SOS_PREPARE_ONLY)
SOS_LAUNCHER = "_sos_launcher:main"
#: seconds a prepare may take before it is stopped and the revision fails
PREPARE_TIMEOUT = 600.0
#: unpack and exit. Not SHIV_COMPILE_PYC=1: compiling every module of a pandas service
#: took 13 s here against 2 s for the first instance to compile what it imports
PREPARE_ENV = {"SOS_PREPARE_ONLY": "1"}


def unpack_dir(path: Path, shiv_root: Path) -> Path | None:
    """Where shiv unpacks the SOS-built artifact at ``path``; None for other files."""
    try:
        with zipfile.ZipFile(path) as archive:
            env = json.loads(archive.read("environment.json"))
            if not isinstance(env, dict) or env.get("entry_point") != SOS_LAUNCHER:
                return None
            build_id = env.get("build_id")
            if not build_id:
                return None
            return Path(cache_path(archive, str(shiv_root), str(build_id)))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


class Preparer:
    """Runs the prepare step of each artifact digest at most once at a time."""

    def __init__(
        self,
        shiv_root: Path,
        logs: LogStore,
        *,
        timeout: float = PREPARE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shiv_root = shiv_root
        self.logs = logs
        self.timeout = timeout
        self.clock = clock
        self._tasks: dict[str, asyncio.Future[str | None]] = {}
        self._processes: set[asyncio.subprocess.Process] = set()

    async def prepare(
        self,
        digest: str,
        argv: list[str],
        env: Mapping[str, str],
        *,
        service: str,
        revision: str,
    ) -> str | None:
        """Prepare the artifact started by ``argv`` (its path last); None when it is ready
        to start, else what went wrong (with the last lines of its output).

        Concurrent calls for one digest share one run; a failed run is tried again by the
        next call (a new revision of the same artifact)."""
        task = self._tasks.get(digest)
        if task is None or (task.done() and (task.cancelled() or task.result() is not None)):
            task = asyncio.ensure_future(self._run(argv, env, service, revision))
            self._tasks[digest] = task
        return await asyncio.shield(task)

    async def _run(
        self, argv: list[str], env: Mapping[str, str], service: str, revision: str
    ) -> str | None:
        path = Path(argv[-1])
        target = await asyncio.to_thread(unpack_dir, path, self.shiv_root)
        if target is None or (target / "site-packages").is_dir():
            return None  # not a SOS-built shiv zipapp, or unpacked before
        name = f"{revision}-prepare"
        self.logs.platform(service, revision, name, f"preparing {path.name}: unpacking once")
        stdout, stderr = self.logs.open(service, revision, name)
        started = self.clock()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env={**env, **PREPARE_ENV, "SHIV_ROOT": str(self.shiv_root)},
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:
            return f"the artifact could not be prepared: {exc}"
        finally:
            stdout.close()
            stderr.close()
        self._processes.add(process)
        why: str | None = None
        try:
            async with asyncio.timeout(self.timeout):
                code = await process.wait()
        except TimeoutError:
            _kill(process)
            await process.wait()
            why = f"preparing the artifact took more than {self.timeout:g}s"
        else:
            if code != 0:
                why = f"preparing the artifact exited with code {code}"
        finally:
            self._processes.discard(process)
            self.logs.forget(name)
        elapsed = self.clock() - started
        if why is None:
            self.logs.platform(service, revision, name, f"prepared in {elapsed:.2f}s")
            log.info("%s: artifact %s prepared in %.2fs", revision, path.name, elapsed)
            return None
        tail = self.logs.stderr_tail(service, revision, name).strip().splitlines()[-10:]
        self.logs.platform(service, revision, name, why)
        log.warning("%s: %s", revision, why)
        # the first line says what failed; the command and the log lines are for the owners
        message = f"{why}\nit ran: SOS_PREPARE_ONLY=1 {' '.join(argv)}"
        return message + ("\nlast log lines:\n" + "\n".join(tail) if tail else "")

    async def close(self) -> None:
        """Stop prepares in progress (a server that stops)."""
        for process in list(self._processes):
            _kill(process)
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
