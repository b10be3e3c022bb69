"""Running an app: what ``flight serve`` and ``App.run()`` do.

Listens on ``HOST``:``PORT`` from the environment unless told otherwise (the SOS launch
contract sets both), writes JSON-lines logs to stderr at ``FLIGHT_LOG_LEVEL`` (default
info), chooses the trace exporter from ``FLIGHT_TRACING``/``OTEL_*`` and serves with uvicorn
(uvloop and httptools when installed).
"""

from __future__ import annotations

import importlib
import os
import signal
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
    current directory) first on ``sys.path``."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise TargetError(
            f"{target!r} is not MODULE:ATTRIBUTE; e.g. `flight serve myservice.web:app` or "
            f"`flight serve path/to/app.py:app`"
        )
    search = Path(app_dir) if app_dir is not None else Path.cwd()
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
        raise
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(
                f"module {module_name!r} has no attribute {attr!r}; it defines: "
                + ", ".join(n for n in dir(module) if not n.startswith("_"))
            ) from None
    if not callable(obj):
        raise TargetError(f"{target!r} is a {type(obj).__name__}, not an app")
    return obj


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
) -> None:
    """Serve ``app`` (a ``flight.App`` or any ASGI app) until interrupted."""
    import uvicorn

    chosen_host, chosen_port = resolve_address(host, port)
    level = (log_level or os.environ.get("FLIGHT_LOG_LEVEL") or "info").lower()
    configure_json_logging(level.upper())
    tracing.configure_tracing(tracing_exporter) if tracing_exporter else (
        tracing.configure_tracing_once()
    )
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
    uvicorn.run(
        app,
        host=chosen_host,
        port=chosen_port,
        log_config=None,
        log_level=level,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=10,
    )


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
