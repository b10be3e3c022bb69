"""SOS settings of a project: ``[tool.sos]`` in pyproject.toml, ``"sos"`` in package.json,
or a ``sos.toml`` beside any manifest (for Go, the JVM, and Python projects without a
pyproject.toml).

::

    # sos.toml (or [tool.sos] in pyproject.toml)
    name = "hello"              # defaults to the manifest's name
    version = "1.0.0"           # defaults to the manifest's version
    type = "go"                 # python | node | go | jvm; normally detected
    app = "hello.web:app"       # Python: a WSGI or ASGI app (or a factory: "hello.web:create()")
    command = "python -m hello" # Python: or a command that serves on $PORT
    interface = "asgi"          # Python: wsgi | asgi; normally detected by importing the app
    main = "./cmd/server"       # Go package, JVM main class or Node entry file
    strip_tests = false         # Python: keep the test suites inside dependencies
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from sos.build.errors import ProjectError

__all__ = ["SosSettings", "load_settings", "read_json", "read_toml"]


class SosSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str | None = Field(default=None, description="python, node, go or jvm")
    name: str | None = None
    version: str | None = None
    app: str | None = Field(default=None, description="Python WSGI/ASGI app, module:attr")
    command: str | None = Field(default=None, description="Python: a command serving on $PORT")
    interface: Literal["wsgi", "asgi"] | None = None
    main: str | None = Field(default=None, description="Go package, JVM main class, Node file")
    include: list[str] | None = Field(
        default=None, description="Python projects without a build backend: what to ship"
    )
    import_check: bool = Field(
        default=True, description="Python: import the app at build time to check it"
    )
    strip_tests: bool = Field(
        default=True,
        description="Python: leave the test suites of dependencies (pandas/tests...) out",
    )
    #: the file these settings came from (None when the project has none)
    source: Path | None = Field(default=None, exclude=True)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"is not valid TOML: {exc}; fix the syntax", file=path) from None
    except UnicodeDecodeError:
        raise ProjectError("is not UTF-8 text", file=path) from None


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ProjectError(
            f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); fix it",
            file=path,
        ) from None
    if not isinstance(data, dict):
        raise ProjectError("must hold a JSON object", file=path)
    return data


def _validate(raw: Any, source: Path, where: str) -> SosSettings:
    if not isinstance(raw, dict):
        raise ProjectError(f"{where} must be a table of settings", file=source)
    try:
        settings = SosSettings.model_validate(raw)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":
            known = ", ".join(k for k in SosSettings.model_fields if k != "source")
            message = f"unknown setting {field!r} in {where} (known: {known})"
        else:
            message = f"{where}: {field}: {first['msg']}"
        raise ProjectError(message, file=source, field=field) from None
    settings.source = source
    return settings


def load_settings(root: Path) -> SosSettings:
    """The project's SOS settings; empty settings when it declares none."""
    found: list[tuple[Path, str, Any]] = []
    sos_toml = root / "sos.toml"
    if sos_toml.is_file():
        found.append((sos_toml, "sos.toml", read_toml(sos_toml)))
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        tool = read_toml(pyproject).get("tool", {})
        if isinstance(tool, dict) and "sos" in tool:
            found.append((pyproject, "[tool.sos]", tool["sos"]))
    package_json = root / "package.json"
    if package_json.is_file():
        data = read_json(package_json)
        if "sos" in data:
            found.append((package_json, '"sos"', data["sos"]))
    if len(found) > 1:
        places = " and ".join(f"{path.name} ({where})" for path, where, _ in found)
        raise ProjectError(
            f"SOS settings are declared in {places}; keep them in one place", file=root
        )
    if not found:
        return SosSettings()
    path, where, raw = found[0]
    return _validate(raw, path, where)
