"""Preparing Python artifacts once per digest, before their first instance starts.

A Python artifact built by ``sos build`` is a shiv zipapp: on its very first start shiv
unpacks the packages inside into ``$SHIV_ROOT`` (seconds for a pandas service), and every
later start reuses them. The local runtime therefore gives every instance of a service the
same ``SHIV_ROOT`` (one per service, see ``sandbox.py``: read-only to its instances, written
only here, in the service's sandbox), keeps the artifact's file name (the store names files
by digest) and runs ``SOS_PREPARE_ONLY=1 python3 ARTIFACT`` once per service and digest
when a revision is first deployed, in the background, before its first instance starts.
No instance pays for unpacking, and two instances starting together never race on it.
The same step then compiles the unpacked packages to bytecode (``compileall``, all cores),
since instances cannot write the bytecode cache into their read-only packages.

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

#: one command of a prepare: its argv, its environment, and how people see it
Step = tuple[list[str], dict[str, str], str]

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
        logs: LogStore,
        *,
        timeout: float = PREPARE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logs = logs
        self.timeout = timeout
        self.clock = clock
        self._tasks: dict[tuple[Path, str], asyncio.Future[str | None]] = {}
        self._processes: set[asyncio.subprocess.Process] = set()

    async def prepare(
        self,
        digest: str,
        steps: Callable[[Path], list[Step]],
        *,
        artifact: Path,
        shiv_root: Path,
        service: str,
        revision: str,
    ) -> str | None:
        """Prepare the artifact stored at ``artifact`` for a service whose packages unpack
        into ``shiv_root``: ``steps(unpacked)`` are the commands to run (unpack, then
        compile), given where they unpack: argv, environment, and how people see it. None
        when it is ready to start, else what went wrong (with the last lines of its output).

        Concurrent calls for one service and digest share one run; a failed run is tried
        again by the next call (a new revision of the same artifact)."""
        key = (shiv_root, digest)
        task = self._tasks.get(key)
        if task is None or (task.done() and (task.cancelled() or task.result() is not None)):
            task = asyncio.ensure_future(self._run(steps, artifact, shiv_root, service, revision))
            self._tasks[key] = task
        return await asyncio.shield(task)

    async def _run(
        self,
        steps: Callable[[Path], list[Step]],
        path: Path,
        shiv_root: Path,
        service: str,
        revision: str,
    ) -> str | None:
        target = await asyncio.to_thread(unpack_dir, path, shiv_root)
        if target is None or (target / "site-packages").is_dir():
            return None  # not a SOS-built shiv zipapp, or unpacked before
        name = f"{revision}-prepare"
        self.logs.platform(service, revision, name, f"preparing {path.name}: unpacking once")
        started = self.clock()
        why: str | None = None
        shown = ""
        try:
            for argv, env, command in steps(target):
                why = await self._step(argv, {**env, **PREPARE_ENV}, service, revision, name)
                if why is not None:
                    shown = command
                    break
        finally:
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
        message = f"{why}\nit ran: {shown}"
        return message + ("\nlast log lines:\n" + "\n".join(tail) if tail else "")

    async def _step(
        self, argv: list[str], env: Mapping[str, str], service: str, revision: str, name: str
    ) -> str | None:
        stdout, stderr = self.logs.open(service, revision, name)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
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
        try:
            async with asyncio.timeout(self.timeout):
                code = await process.wait()
        except TimeoutError:
            _kill(process)
            await process.wait()
            return f"preparing the artifact took more than {self.timeout:g}s"
        finally:
            self._processes.discard(process)
        return None if code == 0 else f"preparing the artifact exited with code {code}"

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
