"""``sos build``, ``sos push`` and ``sos artifacts``: make artifacts, upload them, list them.

::

    sos build [DIR] [--type python|node|go|jvm] [--out DIR] [--json] [--push] [--frozen]
    sos build --remote [DIR]      # checked here, built on the server (SOS_BUILD_REMOTE=1)
    sos builds [ID] [--log] [--lock] [--cancel]  # remote builds: list, one, its log...
    sos push FILE                 # FILE from sos build, with FILE.json beside it
    sos artifacts [NAME]          # on the server; --local for this machine's builds

``sos build`` shows one progress bar over the build's steps (on stderr) and writes the
full log of every tool it ran to ``DIR/.sos/build.log``. Version ranges are resolved into
a lock file beside the manifest (``requirements.lock``, ``package-lock.json``), said once
on stderr (a remote build's comes back and is written there too); ``--frozen`` refuses a
missing or stale lock instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from sos.artifacts.base import human_size
from sos.artifacts.catalog import LocalArtifactCatalog
from sos.build.api import BuildResult, build, read_metadata
from sos.cli import app
from sos.cli._output import JsonOption, console, emit_json, fail, handle_errors, stderr, table
from sos.errors import SOSError
from sos.models import ArtifactMetadata, Build

__all__ = ["RichProgress"]


class RichProgress:
    """Draws the build as one progress bar on stderr, with a line per finished step."""

    def __init__(self) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[tail]}", style="dim", markup=False),
            console=stderr,
            transient=True,
        )
        self._task: TaskID | None = None
        self._started: dict[str, float] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def plan(self, steps: list[str]) -> None:
        if self._task is None:
            self._task = self._progress.add_task("Building", total=len(steps), tail="")
        else:  # a remote build: its steps follow the ones done here
            done = self._progress.tasks[0].completed
            self._progress.update(self._task, total=done + len(steps))

    def begin(self, step: str) -> None:
        self._started[step] = time.monotonic()
        if self._task is not None:
            self._progress.update(self._task, description=step, tail="")

    def output(self, line: str) -> None:
        if self._task is not None and line.strip():
            self._progress.update(self._task, tail=line.strip()[:60])

    def end(self, step: str, detail: str = "") -> None:
        took = time.monotonic() - self._started.get(step, time.monotonic())
        note = f" ({detail})" if detail else ""
        self._progress.console.print(
            f"[green]✓[/] {escape(step + note)} [dim]{took:.1f}s[/]", markup=True
        )
        if self._task is not None:
            self._progress.advance(self._task)


def _summary(result: BuildResult, to: Console = console) -> None:
    meta = result.metadata
    extra = meta.extra
    console = to
    how = "reused an identical earlier build" if result.cached else "built"
    console.print(
        f"[bold green]{how}[/] "
        + escape(
            f"{meta.name} {meta.version} "
            f"({meta.language} {meta.runtime_version}, {human_size(meta.size)})"
        ),
        markup=True,
    )
    console.print(f"  artifact  {result.path}")
    console.print(f"  digest    {meta.digest}")
    console.print(
        f"  entry     {meta.entry_point}"
        + (f" ({extra['interface']})" if "interface" in extra else "")
    )
    console.print(f"  log       {result.log}")
    if result.replaced is not None:
        console.print(
            f"  replaced  the earlier local build {result.replaced.digest[:19]}… of this "
            "version (never pushed)"
        )
    start = {
        "python": f"PORT=8000 python3 {result.path}",
        "node": f"PORT=8000 node {result.path}",
        "go": f"PORT=8000 {result.path}",
        "jvm": f"PORT=8000 java -jar {result.path}",
    }[meta.language]
    console.print(f"  run it    {start}")


@app.command("build")
@handle_errors
def build_command(
    directory: Path = typer.Argument(Path("."), help="The project's directory."),
    type: str | None = typer.Option(
        None, "--type", "-t", help="Project type (python, node, go, jvm) instead of detecting it."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Where to write the artifact (default: DIR/dist)."
    ),
    as_json: bool = JsonOption,
    push: bool = typer.Option(False, "--push", help="Upload the artifact to the server too."),
    python: str | None = typer.Option(
        None, "--python", help="The interpreter Python artifacts will run on (default: this one)."
    ),
    offline: bool = typer.Option(False, "--offline", help="Use caches only, no registries."),
    frozen: bool = typer.Option(
        False,
        "--frozen",
        help="For CI: build only from the committed lock files (requirements.lock, "
        "package-lock.json); refuse a missing or stale one instead of resolving it.",
    ),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Build again even if the source is unchanged."
    ),
    remote: bool | None = typer.Option(
        None,
        "--remote/--local",
        help="Build on the server, on the runtime's own Python (default: SOS_BUILD_REMOTE, "
        "else local). The project is checked here first; the artifact goes to the store.",
    ),
) -> None:
    """Build the project in DIR into a self-contained artifact.

    Dependencies declared with version ranges (flask>=3, "express": "^4") are resolved
    into a lock file beside the manifest (requirements.lock, package-lock.json) that later
    builds reuse: commit it.
    """
    if remote is None:
        remote = os.environ.get("SOS_BUILD_REMOTE", "").strip().lower() in ("1", "true", "yes")
    if remote:
        _remote_build(directory, type=type, frozen=frozen, no_cache=no_cache, as_json=as_json)
        return
    with RichProgress() as progress:
        result = build(
            directory,
            type=type,
            out=out,
            python=python,
            offline=offline,
            frozen=frozen,
            progress=progress,
            use_cache=not no_cache,
        )
    _warn(result.warnings)
    pushed = None
    if push:
        from sos.cli._output import client

        try:
            with client() as api:
                pushed = api.push_artifact(result.path, metadata=result.metadata)
                LocalArtifactCatalog().mark_pushed(pushed, api.url)
        except SOSError as exc:
            _summary(result, to=stderr)
            raise fail(f"built {result.path.name}, but the push failed: {exc.message}") from None
    if as_json:
        data = result.to_json()
        if pushed is not None:
            data["pushed"] = pushed.model_dump(mode="json")
        emit_json(data)
        return
    _summary(result)
    if pushed is not None:
        console.print(
            "[bold green]pushed[/] " + escape(f"{pushed.name} {pushed.version} ({pushed.digest})"),
            markup=True,
        )


def _warn(warnings: Iterable[str]) -> None:
    """What the user should know about a build (a lock file written: commit it), once."""
    for warning in warnings:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}", markup=True)


def _remote_build(
    directory: Path, *, type: str | None, frozen: bool, no_cache: bool, as_json: bool
) -> None:
    from sos.cli._output import client

    with client() as api, RichProgress() as progress:
        done = api.build(directory, type=type, frozen=frozen, no_cache=no_cache, progress=progress)
    _warn(done.warnings)
    if as_json:
        emit_json(done)
        return
    meta = done.artifact
    assert meta is not None
    console.print(
        "[bold green]built on the server[/] "
        + escape(
            f"{meta.name} {meta.version} ({meta.language} {meta.runtime_version}, "
            f"{human_size(meta.size)})"
        ),
        markup=True,
    )
    console.print(f"  build     {done.id} ({done.builder})")
    console.print(f"  digest    {meta.digest}")
    console.print(f"  source    {done.source_digest} ({human_size(done.source_size)})")
    console.print(f"  log       sos builds {done.id} --log")
    console.print(f"  deploy    Artifact(name={meta.name!r}, version={meta.version!r})")


def _build_rows(items: list[Build]) -> list[list[str]]:
    rows = []
    for b in items:
        took = ""
        if b.started_at is not None and b.finished_at is not None:
            took = f"{(b.finished_at - b.started_at).total_seconds():.1f}s"
        what = f"{b.artifact.name} {b.artifact.version}" if b.artifact is not None else ""
        state = b.state + (f" #{b.position}" if b.position is not None else "")
        rows.append(
            [
                b.id,
                state,
                what,
                took,
                b.created_by,
                f"{b.created_at:%Y-%m-%d %H:%M}",
                b.reason or "",
            ]
        )
    return rows


@app.command("builds")
@handle_errors
def builds_command(
    build_id: str | None = typer.Argument(None, help="One build (all without)."),
    log: bool = typer.Option(False, "--log", help="Print its log (following it while it runs)."),
    lock: bool = typer.Option(
        False, "--lock", help="Print the lock file it installed from (requirements.lock...)."
    ),
    cancel: bool = typer.Option(False, "--cancel", help="Cancel it."),
    as_json: bool = JsonOption,
) -> None:
    """Remote builds (sos build --remote): state, steps, artifact, log; cancel one."""
    from sos.cli._output import client

    with client() as api:
        if build_id is None:
            items = api.list_builds()
            if as_json:
                emit_json(items)
                return
            table(
                None,
                ["ID", "STATE", "ARTIFACT", "TOOK", "BY", "STARTED", "REASON"],
                _build_rows(items),
            )
            return
        if lock:
            print(api.build_lock(build_id), end="")
            return
        if cancel:
            done = api.cancel_build(build_id)
        elif log:
            for event in api.build_events(build_id, follow=True):
                if event.get("event") == "output":
                    console.print(str(event.get("line", "")), markup=False, highlight=False)
                elif event.get("event") == "begin":
                    console.print(f"== {event.get('step', '')}", markup=False, highlight=False)
            return
        else:
            done = api.get_build(build_id)
    if as_json:
        emit_json(done)
        return
    table(None, ["ID", "STATE", "ARTIFACT", "TOOK", "BY", "STARTED", "REASON"], _build_rows([done]))
    for step in done.steps:
        took = ""
        if step.started_at is not None and step.finished_at is not None:
            took = f" {(step.finished_at - step.started_at).total_seconds():.1f}s"
        console.print(escape(f"  {step.state:8} {step.name}{took} {step.detail}".rstrip()))
    if done.lock is not None:
        how = "resolved by this build" if done.lock.written else "as uploaded"
        console.print(escape(f"  lock     {done.lock.file} ({how}; sos builds {done.id} --lock)"))
    for warning in done.warnings:
        console.print(escape(f"  warning  {warning}"))


@app.command("push")
@handle_errors
def push_command(
    file: Path = typer.Argument(..., help="An artifact made by sos build (FILE.json beside it)."),
    as_json: bool = JsonOption,
) -> None:
    """Upload an artifact to the server's artifact store."""
    from sos.cli._output import client

    metadata = read_metadata(file)
    with client() as api:
        stored = api.push_artifact(file, metadata=metadata)
        LocalArtifactCatalog().mark_pushed(stored, api.url)
    if as_json:
        emit_json(stored)
        return
    console.print(
        "[bold green]pushed[/] "
        + escape(f"{stored.name} {stored.version} ({human_size(stored.size)}, {stored.digest})"),
        markup=True,
    )


def _artifact_rows(items: list[ArtifactMetadata]) -> list[list[str]]:
    rows = []
    for m in items:
        when = m.pushed_at or m.created_at
        rows.append(
            [
                m.name,
                m.version,
                f"{m.language} {m.runtime_version}",
                human_size(m.size),
                m.digest.removeprefix("sha256:")[:12],
                f"{when:%Y-%m-%d %H:%M}",
                m.pushed_by or m.created_by,
                _provenance(m),
            ]
        )
    return rows


def _provenance(meta: ArtifactMetadata) -> str:
    """``remote bubblewrap src 89b958e471aa log 0d940a89d417`` from ``extra.provenance``."""
    prov = meta.extra.get("provenance")
    if not isinstance(prov, dict):
        return ""
    found = prov.get("builder")
    builder: dict[str, object] = found if isinstance(found, dict) else {}
    source = str(prov.get("source_digest") or prov.get("source_fingerprint") or "")
    parts = [str(builder.get("kind", "")), str(builder.get("where", builder.get("host", "")))]
    if source:
        parts.append("src " + source.removeprefix("sha256:")[:12])
    if prov.get("log_digest"):
        parts.append("log " + str(prov["log_digest"]).removeprefix("sha256:")[:12])
    return " ".join(p for p in parts if p)


@app.command("artifacts")
@handle_errors
def artifacts_command(
    name: str | None = typer.Argument(None, help="Only this artifact name."),
    local: bool = typer.Option(
        False, "--local", help="List this machine's builds instead of the server's artifacts."
    ),
    as_json: bool = JsonOption,
) -> None:
    """List artifacts by name and version."""
    if local:
        items = LocalArtifactCatalog().list(name)
    else:
        from sos.cli._output import client

        with client() as api:
            items = api.list_artifacts(name)
    if as_json:
        emit_json(items)
        return
    columns = [
        "NAME",
        "VERSION",
        "RUNTIME",
        "SIZE",
        "DIGEST",
        "PUSHED" if not local else "BUILT",
        "BY",
        "PROVENANCE",
    ]
    table(None, columns, _artifact_rows(items))
