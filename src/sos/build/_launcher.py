"""Starts the app inside a SOS Python artifact. Copied into every ``.pyz`` as
``_sos_launcher.py``; it runs there with the artifact's own packages and never imports
``sos``.

It honours the launch contract of ``sos.launch``: ``PORT`` and ``HOST`` say where to listen,
``SOS_WORKER_COUNT``, ``SOS_THREAD_COUNT``, ``SOS_WORKER_CLASS`` and ``SOS_TIMEOUT_SECONDS``
say how to serve (the revision's ``GunicornConfig``). WSGI apps are served by gunicorn with
sync or threaded workers, ASGI apps by gunicorn with uvicorn workers. A ``command`` artifact
runs its command instead (``python -m MODULE ...`` or a console script, with ``$PORT``
and other variables expanded).

``SOS_PREPARE_ONLY=1 python ARTIFACT.pyz`` unpacks the artifact into ``$SHIV_ROOT`` and
exits: runtimes run it once per artifact and machine, before the first instance starts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

CONFIG_FILE = Path(__file__).with_name("_sos_launcher.json")
UVICORN_WORKER = "uvicorn_worker.UvicornWorker"


def fail(message: str) -> NoReturn:
    print(f"sos artifact: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def env_int(environ: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        fail(f"{name}={raw!r} is not a whole number")
    if not low <= value <= high:
        fail(f"{name}={value} is out of range: it must be between {low} and {high}")
    return value


def worker_class(interface: str, wanted: str, threads: int) -> str:
    """The gunicorn worker class for the app's interface and the revision's wish."""
    if interface == "asgi":
        if wanted in ("", "uvicorn"):
            return UVICORN_WORKER
        fail(
            f"SOS_WORKER_CLASS={wanted!r} cannot serve this ASGI app: use 'uvicorn' "
            "or leave worker_class unset"
        )
    if wanted == "uvicorn":
        fail("SOS_WORKER_CLASS='uvicorn' serves ASGI apps; this app is WSGI: use sync or gthread")
    if wanted == "gevent":
        if importlib.util.find_spec("gevent") is None:
            fail(
                "SOS_WORKER_CLASS='gevent' needs the gevent package: add it, pinned, to the "
                "project's dependencies and build again"
            )
        return "gevent"
    if wanted in ("sync", "gthread"):
        return wanted
    if wanted:
        fail(f"SOS_WORKER_CLASS={wanted!r} is unknown: use sync, gthread, gevent or uvicorn")
    return "gthread" if threads > 1 else "sync"


def gunicorn_options(config: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    port = env_int(environ, "PORT", 8000, 1, 65535)
    workers = env_int(environ, "SOS_WORKER_COUNT", 1, 1, 64)
    threads = env_int(environ, "SOS_THREAD_COUNT", 1, 1, 256)
    timeout = env_int(environ, "SOS_TIMEOUT_SECONDS", 30, 1, 3600)
    host = environ.get("HOST", "").strip() or "127.0.0.1"
    wanted = environ.get("SOS_WORKER_CLASS", "").strip().lower()
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "bind": [bind],
        "workers": workers,
        "threads": threads,
        "worker_class": worker_class(config["interface"], wanted, threads),
        "timeout": timeout,
        "graceful_timeout": min(timeout, 30),
        "proc_name": config.get("name") or "sos-artifact",
        "errorlog": "-",
        "accesslog": "-" if environ.get("SOS_ACCESS_LOG", "") in ("1", "true") else None,
        # gunicorn >= 24 opens a control socket in ~/.gunicorn shared by every instance
        "control_socket_disable": True,
    }


def serve(config: dict[str, Any]) -> None:
    from gunicorn.app.base import BaseApplication
    from gunicorn.util import import_app

    options = gunicorn_options(config, dict(os.environ))
    target = config["app"]

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                if value is not None and key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return import_app(target)

    Application().run()


def run_command(command: str) -> None:
    argv = [os.path.expandvars(part) for part in shlex.split(command)]
    if not argv:
        fail("the artifact's command is empty")
    program = Path(argv[0]).name
    if program in ("python", "python3") and len(argv) >= 3 and argv[1] == "-m":
        sys.argv = [argv[2], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        return
    scripts = metadata.entry_points(group="console_scripts", name=argv[0])
    for entry in scripts:
        sys.argv = argv
        sys.exit(entry.load()())
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        fail(f"cannot run {argv[0]!r}: {exc}")


def main() -> None:
    if os.environ.get("SOS_PREPARE_ONLY", "") in ("1", "true"):
        # shiv has unpacked the packages into $SHIV_ROOT by now: a runtime calls this once
        # per artifact and machine so that no instance pays for it on its first start
        return
    config = json.loads(CONFIG_FILE.read_text(encoding="utf-8"))
    if config["interface"] == "command":
        run_command(config["command"])
    else:
        serve(config)


if __name__ == "__main__":
    main()
