"""Running an app: what ``flight serve`` and ``App.run()`` do.

Listens on ``HOST``:``PORT`` from the environment unless told otherwise (the SOS launch
contract sets both), writes JSON-lines logs to stderr at ``FLIGHT_LOG_LEVEL`` (default
info), chooses the trace exporter from ``FLIGHT_TRACING``/``OTEL_*`` and serves with uvicorn
(uvloop and httptools when installed).
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import inspect
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flight import tracing
from flight.logs import configure_json_logging, stop_json_logging

__all__ = ["DEFAULT_PORT", "TargetError", "load_target", "resolve_address", "serve"]

DEFAULT_PORT = 8080


class TargetError(ValueError):
    """``module:app`` could not be loaded (the message says why and what to do)."""


def load_target(target: str, app_dir: str | os.PathLike[str] | None = None) -> Any:
    """Import ``module:attr`` (or ``path/to/file.py:attr``) with ``app_dir`` (default: the
    current directory) first on ``sys.path``. Every way this can fail is a
    :class:`TargetError` of one line (what, where, what to do); the import's own exception is
    its ``__cause__``."""
    module_name, sep, attr = target.partition(":")
    search = Path(app_dir) if app_dir is not None else Path.cwd()
    given = module_name or target
    if (search / given).is_dir() and (not sep or "/" in given or os.sep in given):
        raise TargetError(_folder_hint(search / given, given))
    if not sep or not module_name or not attr:
        raise TargetError(
            f"{target!r} is not MODULE:ATTRIBUTE; e.g. `flight serve myservice.web:app` or "
            f"`flight serve path/to/app.py:app`"
        )
    if module_name.endswith(".py"):
        file = (search / module_name).resolve()
        if not file.is_file():
            raise TargetError(f"{target!r}: no such file {file}")
        search, module_name = file.parent, file.stem
    entry = str(search.resolve())
    if entry not in sys.path:
        sys.path.insert(0, entry)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise TargetError(
                f"cannot import {module_name!r} (looked in {entry} and sys.path); run from the "
                f"folder that holds it, or pass --app-dir"
            ) from None
        raise TargetError(
            f"{module_name}: importing it failed: {exc} ({_missing_hint(exc, module_name, attr)})"
        ) from exc
    except Exception as exc:
        raise TargetError(
            f"{module_name}: importing it failed: {type(exc).__name__}: {exc} (fix the module; "
            f"--log-level debug shows the traceback)"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(
                f"module {module_name!r} has no attribute {attr!r}; it defines: "
                + ", ".join(n for n in dir(module) if not n.startswith("_"))
            ) from None
    if not _is_app(obj):
        where = getattr(module, "__file__", None) or module_name
        apps = [n for n, v in vars(module).items() if not n.startswith("_") and _is_flight_app(v)]
        given = target.partition(":")[0]
        instead = (
            "serve " + " or ".join(f"{given}:{n}" for n in apps)
            if apps
            else "point at the flight.App the module creates (app = flight.App(...))"
        )
        what = "a class" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise TargetError(
            f"{attr} in {_shown(where)} is not a flight.App or an ASGI application (it is "
            f"{what}); {instead}"
        )
    return obj


def _folder_hint(folder: Path, given: str) -> str:
    configs = given
    if not _has_configs(folder) and _has_configs(folder / "pipelines"):
        configs = str(Path(given) / "pipelines")
    apps = sorted(p.name for p in folder.glob("*app*.py"))
    app = f"{Path(given) / apps[0]}:app" if apps else "path/to/app.py:app"
    return (
        f"{given!r} is a folder, not an app: serve the pipeline configs in it with "
        f"`flight serve --configs {configs}`, or an app with `flight serve {app}`"
    )


def _has_configs(folder: Path) -> bool:
    return folder.is_dir() and any(
        p.suffix in (".yaml", ".yml", ".json") for p in folder.iterdir() if p.is_file()
    )


def _shown(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _missing_hint(exc: ModuleNotFoundError, module_name: str, attr: str) -> str:
    """What to do when the app's module imports a module that cannot be found."""
    top = (exc.name or "").partition(".")[0]
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    origin = spec.origin if spec is not None else None
    if origin and top:
        folder = Path(origin).parent
        if (folder / f"{top}.py").is_file() or (folder / top).is_dir():
            return (
                f"the module's folder is not on the path: use the file path "
                f"{_shown(origin)}:{attr}, or run from its folder"
            )
    return f"install {top!r}, or pass --app-dir with the folder that holds it"


def _is_flight_app(obj: Any) -> bool:
    from flight.serving.app import App

    return isinstance(obj, App)


def _is_app(obj: Any) -> bool:
    """A flight.App, or an ASGI application: a callable (not a class) taking
    ``(scope, receive, send)``."""
    if _is_flight_app(obj):
        return True
    if isinstance(obj, type) or not callable(obj):
        return False
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return True  # a builtin or extension callable: let the server try it
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 3


def resolve_address(
    host: str | None, port: int | None, env: Mapping[str, str] | None = None
) -> tuple[str, int]:
    """``host``/``port`` if given, else ``HOST``/``PORT`` from the environment, else
    127.0.0.1:8080."""
    environ = os.environ if env is None else env
    chosen_host = host or environ.get("HOST", "").strip() or "127.0.0.1"
    if port is None:
        raw = environ.get("PORT", "").strip()
        if raw:
            try:
                port = int(raw)
            except ValueError:
                raise TargetError(f"PORT={raw!r} is not a port number") from None
        else:
            port = DEFAULT_PORT
    if not 0 <= port <= 65535:
        raise TargetError(f"port {port} is out of range (0-65535)")
    return chosen_host, port


def serve(
    app: Any,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str | None = None,
    tracing_exporter: str | None = None,
    workers: int = 1,
) -> None:
    """Serve ``app`` (a ``flight.App`` or any ASGI app) until interrupted. With ``workers``
    > 1, that many processes share the port, each building the app again from the
    ``FLIGHT_SERVE_*`` environment that ``flight serve --workers`` sets (see
    :mod:`flight.serving._worker`)."""
    import uvicorn

    chosen_host, chosen_port = resolve_address(host, port)
    level = (log_level or os.environ.get("FLIGHT_LOG_LEVEL") or "info").lower()
    configure_json_logging(level.upper())
    tracing.configure_tracing(tracing_exporter) if tracing_exporter else (
        tracing.configure_tracing_once()
    )
    _check_port(chosen_host, chosen_port)
    name = getattr(app, "name", type(app).__name__)
    shown = f"[{chosen_host}]" if ":" in chosen_host else chosen_host
    print(
        f"flight: serving {name!r} on http://{shown}:{chosen_port} "
        f"(explorer /explorer/, metrics /metrics, docs /docs; tracing: "
        f"{tracing.tracing_mode()}; logs: JSON lines on stderr)",
        file=sys.stderr,
        flush=True,
    )
    _flush_logs_on_sigterm()
    if workers > 1:
        os.environ["FLIGHT_LOG_LEVEL"] = level
        if tracing_exporter:
            os.environ["FLIGHT_TRACING"] = tracing_exporter
        print(f"flight: {workers} worker processes", file=sys.stderr, flush=True)
    uvicorn.run(
        app if workers == 1 else "flight.serving._worker:make_app",
        factory=workers > 1,
        workers=workers if workers > 1 else None,
        host=chosen_host,
        port=chosen_port,
        log_config=None,
        log_level=level,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=10,
    )


def _check_port(host: str, port: int) -> None:
    """A port another process listens on is one clear line now, not a uvicorn error later
    (bound with SO_REUSEADDR, as uvicorn binds it)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise TargetError(
            f"cannot listen on {host!r}: {exc.strerror}; check --host or $HOST"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise TargetError(
                f"cannot listen on {host}:{port}: {why}; stop what listens there, or pick "
                f"another port with --port or $PORT"
            ) from None


def _flush_logs_on_sigterm() -> None:
    """uvicorn stops gracefully on SIGTERM, then re-raises it to exit with the signal's
    status, which skips ``atexit``: write the queued log lines first."""
    if threading.current_thread() is not threading.main_thread():
        return

    def flush_then_exit(signum: int, _frame: Any) -> None:
        stop_json_logging()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, flush_then_exit)
