"""Server plug-ins: modules that add API routes and set things up at start-up.

A server plug-in is a module with an ``APIRouter`` named ``router`` (mounted under
``/api/v1``) and/or ``configure(state: ServerState) -> None`` (called at start-up, after the
store is migrated, before the backend is created). The server finds them the way every SOS
plug-in is found (``docs/sos/extending.md``): entry points of group ``sos.server_plugins``,
``name = "package.module"``. The built-in ones are declared in ``pyproject.toml`` too, and
listed in ``sos.server.app.ROUTER_MODULES`` so that they are there without a reinstall of
an editable checkout; a module added to that list in-process counts as well.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING

from fastapi import APIRouter

from sos.errors import ValidationError

if TYPE_CHECKING:
    from sos.server.app import ServerState

__all__ = ["ENTRY_POINT_GROUP", "ServerPlugin", "load_server_plugins", "server_plugin_modules"]

ENTRY_POINT_GROUP = "sos.server_plugins"


@dataclass(frozen=True)
class ServerPlugin:
    """What the server takes from a plug-in module (or any object with the same names)."""

    name: str
    router: APIRouter | None = None
    configure: Callable[[ServerState], None] | None = None

    @classmethod
    def of(cls, plugin: object) -> ServerPlugin:
        if isinstance(plugin, ServerPlugin):
            return plugin
        router = getattr(plugin, "router", None)
        configure = getattr(plugin, "configure", None)
        name = str(getattr(plugin, "__name__", type(plugin).__name__))
        if router is not None and not isinstance(router, APIRouter):
            raise ValidationError(f"server plug-in {name}: its router is not an APIRouter")
        return cls(name=name, router=router, configure=configure)


def server_plugin_modules(builtin: Iterable[str]) -> list[str]:
    """The modules of every server plug-in: ``builtin`` first, then the entry points'."""
    modules = list(dict.fromkeys(builtin))
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.value not in modules:
            modules.append(entry.value)
    return modules


def load_server_plugins(builtin: Iterable[str]) -> list[ServerPlugin]:
    """Import every server plug-in; one that cannot be imported stops the server, named."""
    plugins = []
    for module in server_plugin_modules(builtin):
        try:
            loaded = importlib.import_module(module)
        except ImportError as exc:
            raise ValidationError(
                f"server plug-in {module} cannot be imported: {exc}; install what it needs "
                "or uninstall the package that declares it"
            ) from exc
        plugins.append(ServerPlugin.of(loaded))
    return plugins
