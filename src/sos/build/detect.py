"""Which builder a project needs, from its files (or from ``--type`` / ``type =``)."""

from __future__ import annotations

from pathlib import Path

from sos.build.base import Builder
from sos.build.errors import ProjectError
from sos.build.registry import get_builder, registered_builders
from sos.build.settings import SosSettings

__all__ = ["detect_builder"]

_WHICH = {"pyproject.toml": "python", "package.json": "node"}


def detect_builder(root: Path, settings: SosSettings, type: str | None = None) -> type[Builder]:
    """The builder for the project at ``root``.

    ``type`` (``sos build --type``) wins, then ``type`` in the project's SOS settings, then
    the manifest files found. Two kinds of manifest and no SOS settings to choose between
    them is an error that says how to choose.
    """
    if not root.is_dir():
        raise ProjectError(f"{root} is not a directory; give the project's directory")
    if type:
        return get_builder(type)
    if settings.type:
        return get_builder(settings.type)
    found = [
        (name, cls, marker)
        for name, cls in registered_builders().items()
        if (marker := cls.detect(root)) is not None
    ]
    if not found:
        raise ProjectError(
            f"no project found in {root}: SOS builds Python (pyproject.toml, setup.py, "
            "requirements.txt), Node (package.json), Go (go.mod) and JVM (pom.xml, a built "
            ".jar, or Java sources with a main class) projects; run sos build in the "
            "project's directory, or pass --type",
        )
    if len(found) == 1:
        return found[0][1]
    if settings.source is not None and settings.source.name in _WHICH:
        return get_builder(_WHICH[settings.source.name])
    markers = ", ".join(f"{marker} ({name})" for name, _, marker in found)
    names = "|".join(name for name, _, _ in found)
    raise ProjectError(
        f"{root} looks like more than one kind of project: {markers}. Choose one with "
        f'`sos build --type {names}` or type = "..." in sos.toml',
    )
