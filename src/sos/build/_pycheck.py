"""Imports a Python app the way its artifact will, at build time, to check it and learn
whether it is WSGI or ASGI. Run as a script by the runtime interpreter with ``-S`` (no
site-packages of its own): ``python -S _pycheck.py LAYER... -- MODE TARGET``.

Prints one line ``SOS_CHECK {json}``; never imports ``sos``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import site
import sys
import traceback
from importlib import metadata
from typing import Any


def interface_of(app: Any) -> str:
    if inspect.isclass(app):
        raise TypeError(f"{app!r} is a class, not an app instance; point at the app object")
    if not callable(app):
        raise TypeError(f"{type(app).__name__} object is not callable, so it is not a web app")
    call = app if inspect.isroutine(app) else type(app).__call__
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return "asgi"
    return "wsgi"


def load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    factory = attr.endswith("()")
    attr = attr.removesuffix("()")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj() if factory else obj


def check_command(target: str) -> dict[str, Any]:
    import shlex

    argv = shlex.split(target)
    if len(argv) >= 3 and argv[0] in ("python", "python3") and argv[1] == "-m":
        found = importlib.util.find_spec(argv[2]) is not None
        return {"interface": "command", "program": argv[2], "found": found, "how": "module"}
    found = bool(metadata.entry_points(group="console_scripts", name=argv[0]))
    return {"interface": "command", "program": argv[0], "found": found, "how": "script"}


def main() -> None:
    args = sys.argv[1:]
    split = args.index("--")
    layers, (mode, target) = args[:split], args[split + 1 :]
    for layer in reversed(layers):
        site.addsitedir(layer)
        sys.path.remove(layer)
        sys.path.insert(0, layer)
    result: dict[str, Any] = {"python": "{}.{}".format(*sys.version_info[:2])}
    try:
        if mode == "command":
            result.update(check_command(target))
        else:
            result["interface"] = interface_of(load(target))
    except ModuleNotFoundError as exc:
        result.update(error="missing_module", module=exc.name, trace=traceback.format_exc())
    except (ImportError, AttributeError, TypeError) as exc:
        result.update(error="bad_app", message=f"{type(exc).__name__}: {exc}")
        result["trace"] = traceback.format_exc()
    except BaseException as exc:  # the app's own code failed while importing
        result.update(error="import_failed", message=f"{type(exc).__name__}: {exc}")
        result["trace"] = traceback.format_exc()
    print("SOS_CHECK " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
