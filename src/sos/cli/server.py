"""``sos server``: run the API server (and the reconciler and backend behind it)."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import IO

import typer
import uvicorn
from sqlalchemy.engine import make_url
from typer.core import TyperCommand

from sos.artifacts.base import human_size
from sos.cli import app
from sos.cli._output import EXIT_USAGE, fail, handle_errors
from sos.config import ServerSettings
from sos.errors import ValidationError
from sos.runtime.registry import (
    BUILTIN_BACKENDS,
    DEFAULT_BACKEND,
    BackendFlag,
    BackendPlugin,
    backend_names,
    get_backend,
)
from sos.server.app import create_app

__all__ = ["server"]

log = logging.getLogger(__name__)

#: below this much free space in the data dir, `sos server` refuses to start
MIN_FREE_BYTES = 4 * 2**20


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise fail(
                f"port {port} on {host} is already in use (another `sos server`?); "
                "stop it or choose another with --port / SOS_PORT",
                EXIT_USAGE,
            ) from None
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}", EXIT_USAGE) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold ``<data dir>/server.lock`` for as long as this process runs (the kernel lets go
    when it ends, even on SIGKILL): two servers on one data dir would both manage the same
    instances. The file holds the pid of the server that has it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = (data_dir / "server.lock").open("a+", encoding="utf-8")
    except OSError as exc:
        raise fail(
            f"cannot write to the data dir {data_dir} ({exc.strerror}); make it writable, "
            "free some space, or choose another with --data-dir / SOS_DATA_DIR"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise fail(
            f"another sos server{f' (pid {holder})' if holder.isdigit() else ''} is using the "
            f"data dir {data_dir}; stop it first, or give this one its own --data-dir",
            EXIT_USAGE,
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        free = shutil.disk_usage(data_dir).free
    except OSError as exc:
        raise fail(
            f"cannot write to the data dir {data_dir} ({exc.strerror}); make it writable, "
            "free some space, or choose another with --data-dir / SOS_DATA_DIR"
        ) from None
    if free < MIN_FREE_BYTES:
        raise fail(
            f"the data dir {data_dir} has only {human_size(free)} free; the server needs at "
            f"least {human_size(MIN_FREE_BYTES)} for its database, artifacts and logs: free "
            "some space, or choose another with --data-dir / SOS_DATA_DIR"
        )
    return handle


def _options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"--backend-opt {pair!r} must look like KEY=VALUE", EXIT_USAGE)
        options[key.strip()] = value.strip()
    return options


class _ServerCommand(TyperCommand):
    """``sos server``, whose help ends with the flags of every backend
    (``BackendPlugin.flags``, declared by each backend in its own package)."""

    @property
    def epilog(self) -> str:
        lines = []
        for name, plugin in _backends():
            for flag in plugin.flags:
                lines.append(f"{flag.flag} {flag.type.__name__.upper()}  ({name}) {flag.help}")
        return "Backend flags (the backend's options, winning over --backend-opt):\n\n" + (
            "\n\n".join(lines)
        )

    @epilog.setter
    def epilog(self, value: str | None) -> None:
        pass


def _backends() -> list[tuple[str, BackendPlugin]]:
    found = []
    for name in backend_names():
        try:
            found.append((name, get_backend(name)))
        except ValidationError as exc:  # a broken plug-in must not break the command
            log.warning("backend %s: its flags are not offered: %s", name, exc)
    return found


def _backend_flags(chosen: str, args: list[str]) -> dict[str, str]:
    """The options that the backend flags in ``args`` set: ``--router-port 0`` or
    ``--router-port=0``. A flag of another backend, or of none, is a usage error."""
    owners = {flag.flag: (name, flag) for name, plugin in _backends() for flag in plugin.flags}
    given: list[tuple[str, BackendFlag, str]] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        text, sep, value = arg.partition("=")
        if text not in owners:
            what = "no such option" if arg.startswith("-") else "unexpected argument"
            raise fail(f"{what}: {arg} (see sos server --help)", EXIT_USAGE)
        if not sep:
            if not rest:
                raise fail(f"{text} needs a value", EXIT_USAGE)
            value = rest.pop(0)
        name, flag = owners[text]
        if flag.type is int and not value.lstrip("-").isdigit():
            raise fail(f"{text} must be a whole number, not {value!r}", EXIT_USAGE)
        given.append((name, flag, value))
    others = [(name, flag) for name, flag, _ in given if name != chosen]
    if others:
        owner = others[0][0]
        flags = ", ".join(dict.fromkeys(flag.flag for name, flag in others if name == owner))
        raise fail(f"{flags}: only with --backend {owner}", EXIT_USAGE)
    return {flag.option: value for _, flag, value in given}


@app.command(
    cls=_ServerCommand,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
@handle_errors
def server(
    ctx: typer.Context,
    host: str = typer.Option(None, help="Address to listen on [env SOS_HOST; 127.0.0.1]."),
    port: int = typer.Option(
        None, help="Port to listen on; 0 picks a free one [env SOS_PORT; 8700]."
    ),
    data_dir: Path = typer.Option(
        None, help="Where state lives [env SOS_DATA_DIR; ~/.local/share/sos]."
    ),
    database_url: str = typer.Option(
        None,
        help="SQLAlchemy URL, e.g. postgresql://user@host/sos "
        "[env SOS_DATABASE_URL; SQLite file sos.db in the data dir].",
    ),
    backend: str = typer.Option(
        None,
        help=f"What runs revisions: {', '.join(BUILTIN_BACKENDS)} or a plug-in's "
        f"[env SOS_BACKEND; {DEFAULT_BACKEND}].",
    ),
    backend_opt: list[str] = typer.Option(
        [],
        "--backend-opt",
        help="Backend option KEY=VALUE (repeatable); an unknown KEY is refused with the "
        "list of the chosen backend's.",
    ),
    resync_seconds: float = typer.Option(
        None, help="Reconcile every service this often even without changes [30]."
    ),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
) -> None:
    """Run the SOS API server. It creates an admin token on first start."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    settings = ServerSettings.from_env()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    if data_dir is not None:
        settings.data_dir = data_dir.expanduser()
    if database_url is not None:
        settings.database_url = database_url
    if backend is not None:
        settings.backend = backend
    if resync_seconds is not None:
        settings.resync_seconds = resync_seconds
    settings.backend = settings.backend or DEFAULT_BACKEND
    settings.backend_options.update(_options(backend_opt))
    # a backend's own flags win over --backend-opt
    settings.backend_options.update(_backend_flags(settings.backend, ctx.args))

    lock = _lock_data_dir(settings.data_dir)  # noqa: F841 - held until the process ends
    sock = _bind(settings.host, settings.port)
    application = create_app(settings)
    state = application.state.sos
    bound = sock.getsockname()[1]
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{shown_host}:{bound}"
    db = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    print(f"SOS API server listening on {url}  (API docs: {url}/api/v1/docs)")
    print(f"  web UI: {url}/ui/")
    print(f"  backend: {settings.backend}   data dir: {settings.data_dir}   database: {db}")
    from sos.runtime.local import LocalBackend  # imported already when it is the backend

    if isinstance(state.backend, LocalBackend):
        router = state.backend.router  # the shared router (an Ingress)
        # bound already (a busy port is an error before this); the URLs the router hands
        # out know its port only once it runs, so name the bound one here
        services = f"http://NAME.{router.domain}:{router.port}/"
        print(f"  services: {services}  (router metrics: /metrics there)")
    token = state.admin_token
    if token is not None and token.from_env:
        print("  admin token: the one in SOS_ADMIN_TOKEN")
    elif token is not None and token.path is not None:
        first = " (created now; only you can read it)" if token.created else ""
        print(f"  admin token: in {token.path}{first}")
        print(f"  use it: export SOS_URL={url} SOS_TOKEN=$(cat {token.path})")
    else:
        print(
            "  admin token: created earlier, its file is gone; to add one, restart with "
            "SOS_ADMIN_TOKEN=<a new secret of 16+ characters>"
        )
    sys.stdout.flush()

    config = uvicorn.Config(
        application,
        log_level=log_level.lower(),
        access_log=log_level.lower() == "debug",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run(sockets=[sock])
