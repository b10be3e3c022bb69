"""The pipelines a server runs by name: from a directory of config files (reloaded when a
file is added, changed or removed) and from Python.

Each config file defines one pipeline, served under the ``name`` it declares. A new version
of a file is validated whole before it replaces the running one; a version that fails
validation is rejected: its error is logged and kept on the pipeline's entry (``GET
/pipelines/{name}``) while the last good version keeps serving. Removing a file stops
serving its pipeline. Only config files are reloaded; Python modules a config imports are
imported once per process (restart to change operator code).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from flight._limits import MAX_CONFIG_BYTES, load_yaml
from flight.errors import (
    ConfigError,
    FlightError,
    PipelineDefinitionError,
    UnknownPipelineError,
)
from flight.metrics import Metrics
from flight.pipeline import Pipeline

__all__ = ["CONFIG_SUFFIXES", "PipelineCatalog", "PipelineEntry"]

logger = logging.getLogger(__name__)

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


@dataclasses.dataclass(frozen=True)
class PipelineEntry:
    """One served pipeline: the version serving now and the last rejected one, if newer."""

    name: str
    pipeline: Pipeline | None  # None: no version of it has passed validation yet
    source: Path | None  # the config file; None for a pipeline given in Python
    version: str | None = None  # sha256 prefix of the file serving now
    loaded_at: float | None = None
    error: str | None = None  # why the newest version of the file was rejected
    error_version: str | None = None
    error_at: float | None = None
    #: the file whose rejection ``error`` is about, when not ``source`` (a second file
    #: declaring the same name): shown here, at GET /pipelines/{name}, not only in the logs
    error_source: Path | None = None

    @property
    def status(self) -> str:
        """``ok``; ``rejected`` (the newest version failed, the last good one serves); or
        ``invalid`` (no version has passed validation, nothing serves)."""
        if self.pipeline is None:
            return "invalid"
        return "rejected" if self.error is not None else "ok"


@dataclasses.dataclass
class _FileState:
    stat: tuple[int, int]
    digest: str
    name: str | None  # the pipeline name this file serves (or claimed, when invalid)


class PipelineCatalog:
    """Served pipelines by name. ``directory``: config files to serve and watch."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.directory = Path(directory).resolve() if directory is not None else None
        if self.directory is not None and not self.directory.is_dir():
            raise FileNotFoundError(
                f"pipeline config directory {self.directory} does not exist; create it or "
                f"point configs= (flight serve --configs) at the folder holding *.yaml files"
            )
        self._clock = clock
        self._metrics = metrics
        self._lock = threading.Lock()
        self._entries: dict[str, PipelineEntry] = {}
        self._files: dict[Path, _FileState] = {}
        self.generation = 0

    # -- reading ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[PipelineEntry]:
        entries = self._entries
        return [entries[n] for n in sorted(entries)]

    def entry(self, name: str) -> PipelineEntry:
        found = self._entries.get(name)
        if found is None:
            known = sorted(self._entries)
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownPipelineError(
                f"no pipeline named {name!r} is served{hint} (served: {', '.join(known) or 'none'})"
            )
        return found

    def get(self, name: str) -> Pipeline:
        """The version of pipeline ``name`` serving now."""
        entry = self.entry(name)
        if entry.pipeline is None:
            raise UnknownPipelineError(
                f"pipeline {name!r} has no valid version to serve: {entry.error}"
            )
        return entry.pipeline

    # -- changing --------------------------------------------------------------------------

    def add(self, pipeline: Pipeline) -> None:
        """Serve a pipeline built in Python (never reloaded)."""
        with self._lock:
            existing = self._entries.get(pipeline.name)
            if existing is not None and existing.source is not None:
                raise PipelineDefinitionError(
                    f"pipeline {pipeline.name!r} is already served from {existing.source}; "
                    f"give the Python pipeline another name"
                )
            entries = dict(self._entries)
            entries[pipeline.name] = PipelineEntry(
                pipeline.name, pipeline, None, "python", self._clock()
            )
            self._entries = entries

    def scan(self) -> list[str]:
        """Bring the catalog in line with the directory; returns what changed (for logs).

        Blocking (reads files, may import modules): servers run it in a worker thread."""
        if self.directory is None:
            return []
        with self._lock:
            changes = self._scan_locked(self.directory)
            if changes:
                self.generation += 1
            return changes

    def _scan_locked(self, directory: Path) -> list[str]:
        entries = dict(self._entries)
        changes: list[str] = []
        try:
            found = sorted(
                p
                for p in directory.iterdir()
                if p.suffix.lower() in CONFIG_SUFFIXES and not p.name.startswith(".")
            )
        except OSError as exc:
            logger.warning("cannot list pipeline configs in %s: %s", directory, exc)
            return []
        present = set(found)
        for path in [p for p in self._files if p not in present]:
            state = self._files.pop(path)
            if state.name is not None and _owned(entries, state.name, path):
                del entries[state.name]
                changes.append(f"removed {state.name} ({path.name} was deleted)")
                logger.info("stopped serving pipeline %r: %s was removed", state.name, path)
            for name, entry in list(entries.items()):
                if entry.error_source == path:  # the duplicate that was refused is gone
                    entries[name] = dataclasses.replace(
                        entry, error=None, error_version=None, error_at=None, error_source=None
                    )
                    changes.append(f"{path.name} no longer competes for {name}")
        for path in found:
            change = self._load_file(path, entries)
            if change:
                changes.append(change)
        self._entries = entries
        return changes

    def _load_file(self, path: Path, entries: dict[str, PipelineEntry]) -> str | None:
        try:
            st = path.stat()
            data = path.read_bytes()
        except OSError:
            return None  # removed while we looked; the next scan sees it gone
        stat = (st.st_mtime_ns, st.st_size)
        state = self._files.get(path)
        if state is not None and state.stat == stat:
            return None
        digest = hashlib.sha256(data).hexdigest()[:12]
        if state is not None and state.digest == digest:
            state.stat = stat
            return None
        now = self._clock()
        previous = state.name if state is not None else None
        try:
            pipeline = Pipeline.from_config(path, origin=path.name)
            name = pipeline.name
            if not _owned(entries, name, path) and name in entries:
                holder = entries[name].source
                raise ConfigError(
                    f"{path.name}: pipeline {name!r} is already served "
                    f"{f'from {holder.name}' if holder else 'from Python'}; give it another name"
                )
            if pipeline.canary is not None:
                run_canary(pipeline, path.name)
        except Exception as exc:  # a config that fails in any way is rejected, never served
            target = previous or _declared_name(data, path)
            message = str(exc) if isinstance(exc, FlightError) else f"{path.name}: {exc!r}"
            self._files[path] = _FileState(stat, digest, target)
            current = entries.get(target)
            if current is None:
                entries[target] = PipelineEntry(
                    target, None, path, error=message, error_version=digest, error_at=now
                )
            else:
                entries[target] = dataclasses.replace(
                    current,
                    error=message,
                    error_version=digest,
                    error_at=now,
                    error_source=None if current.source == path else path,
                )
            self._count("rejected")
            logger.warning(
                "rejected new version %s of pipeline config %s (%s); %s",
                digest,
                path,
                message,
                "the last good version keeps serving"
                if current is not None and current.pipeline is not None
                else "nothing serves under that name",
                extra={"flight": {"pipeline": target, "config": str(path), "event": "rejected"}},
            )
            return f"rejected {path.name}: {message}"
        if previous is not None and previous != name and _owned(entries, previous, path):
            del entries[previous]
        verb = "reloaded" if name in entries and entries[name].pipeline is not None else "loaded"
        entries[name] = PipelineEntry(name, pipeline, path, digest, now)
        self._files[path] = _FileState(stat, digest, name)
        self._count("ok")
        logger.info(
            "%s pipeline %r version %s from %s",
            verb,
            name,
            digest,
            path,
            extra={"flight": {"pipeline": name, "config": str(path), "event": verb}},
        )
        return f"{verb} {name} from {path.name}"

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.config_reloads.labels(result).inc()

    # -- watching --------------------------------------------------------------------------

    async def watch(self, stop: asyncio.Event, *, debounce_ms: int = 200) -> None:
        """Rescan whenever something in the directory changes, until ``stop`` is set.

        Uses the OS's file notifications (watchfiles); falls back to polling every second
        when they are unavailable."""
        if self.directory is None:
            return
        from watchfiles import awatch

        try:
            async for _ in awatch(
                self.directory,
                stop_event=stop,
                debounce=debounce_ms,
                step=50,
                recursive=False,
                watch_filter=None,
            ):
                await asyncio.to_thread(self.scan)
        except (OSError, RuntimeError) as exc:
            logger.warning(
                "cannot watch %s for changes (%s); polling every second", self.directory, exc
            )
            while not stop.is_set():
                await asyncio.to_thread(self.scan)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)


CANARY_SECONDS = 30.0


def run_canary(pipeline: Pipeline, where: str) -> int:
    """Run ``pipeline`` on its declared ``canary`` context (in a thread of its own, with its
    own event loop, whatever thread calls it); raise :class:`ConfigError` when the run
    fails, so that a version that would fail every request never replaces a good one.
    Returns the number of items (an empty answer is not a failure)."""
    context = dict(pipeline.canary or ())
    pool = ThreadPoolExecutor(1, thread_name_prefix="flight-canary")
    try:
        result = pool.submit(asyncio.run, pipeline.execute(**context)).result(
            timeout=CANARY_SECONDS
        )
    except FlightError as exc:
        raise ConfigError(f"{where}: the canary run with {context} failed: {exc}") from None
    except TimeoutError:
        raise ConfigError(
            f"{where}: the canary run with {context} took longer than {CANARY_SECONDS:g}s"
        ) from None
    finally:
        pool.shutdown(wait=False)
    if result.error is not None:
        raise ConfigError(f"{where}: the canary run with {context} failed: {result.error}")
    return len(result.items)


def _owned(entries: dict[str, PipelineEntry], name: str, path: Path) -> bool:
    entry = entries.get(name)
    return entry is not None and entry.source == path


def _declared_name(data: bytes, path: Path) -> str:
    """The ``name`` a (possibly invalid) config declares, or the file's stem."""
    try:
        parsed: Any = load_yaml(data[:MAX_CONFIG_BYTES])  # JSON is YAML too
    except (yaml.YAMLError, ValueError):
        return path.stem
    name = parsed.get("name") if isinstance(parsed, dict) else None
    return name if isinstance(name, str) and name.strip() else path.stem
