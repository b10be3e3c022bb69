"""The app factory: ``create_app(settings)`` builds the SOS API server.

Start-up (``ServerState.open``, synchronous, before the first request): make the data dir,
open the store and migrate it, make sure an admin token exists, let server plug-ins
configure themselves (``sos.server.plugins``: e.g. the artifact store), create the backend
(``sos.runtime.registry``).
The lifespan then starts the reconciler and stops it (and closes the backend) on shutdown.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter, FastAPI

from sos.artifacts.base import ArtifactStore
from sos.config import ServerSettings
from sos.errors import ValidationError
from sos.models import TokenSpec
from sos.reconciler import Reconciler
from sos.runtime.base import Backend
from sos.runtime.registry import DEFAULT_BACKEND, ArtifactPath, BackendContext, create_backend
from sos.server.core import ArtifactResolver, ControlPlane
from sos.server.errors import install_error_handlers
from sos.server.guard import RequestGuard, max_request_bytes
from sos.server.plugins import ServerPlugin, load_server_plugins
from sos.store import Store
from sos.store.secrets import SecretTable, load_key

__all__ = ["API_PREFIX", "ROUTER_MODULES", "AdminToken", "ServerState", "create_app"]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

#: The built-in server plug-ins (``sos.server.plugins``), also entry points of group
#: ``sos.server_plugins`` in pyproject.toml; the entry points of installed packages follow.
#: A module's ``router`` (an APIRouter) is mounted under /api/v1; its optional
#: ``configure(state: ServerState) -> None`` runs at start-up before the backend is created,
#: to set ``state.resolver``, ``state.artifact_path``, ``state.extra``.
ROUTER_MODULES: list[str] = [
    "sos.server.artifacts",
    "sos.server.builds",
    "sos.server.metrics",
    "sos.server.rollouts",
]


@dataclass(frozen=True)
class AdminToken:
    """Where the bootstrap admin token is, and whether this start created it."""

    path: Path | None
    created: bool
    from_env: bool = False


@dataclass
class ServerState:
    """Everything the routes share, at ``request.app.state.sos``."""

    settings: ServerSettings
    store: Store
    control: ControlPlane
    backend: Backend | None = None
    reconciler: Reconciler | None = None
    admin_token: AdminToken | None = None
    resolver: ArtifactResolver | None = None
    artifact_path: ArtifactPath | None = None
    artifact_store: ArtifactStore | None = None
    #: a team's secrets, sealed with the server's key (``sos.store.secrets``)
    secrets: SecretTable | None = None
    #: room for plug-ins to keep their objects (e.g. ``extra["artifacts"]``); each plug-in
    #: knows the type of its own and checks it (``isinstance``) when it reads it back
    extra: dict[str, object] = field(default_factory=dict)
    #: plug-ins' own keys for requests with a body (``sos.server.guard``): each is asked
    #: ``(method, path, secret)`` and says whether the secret opens that one request (a
    #: remote build's key opens its artifact upload)
    body_keys: list[Callable[[str, str, str], bool]] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        settings: ServerSettings,
        *,
        store: Store | None = None,
        backend: Backend | None = None,
        resolver: ArtifactResolver | None = None,
        plugins: Sequence[ServerPlugin | object] = (),
        clock: Callable[[], datetime] | None = None,
    ) -> ServerState:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # absolute: instances run in <data dir>/runtime and open their artifacts by path
        settings.data_dir = settings.data_dir.resolve()
        if store is None:
            store = Store(settings.resolved_database_url, **({"clock": clock} if clock else {}))
        store.migrate()
        state = cls(settings=settings, store=store, control=ControlPlane(store), resolver=resolver)
        state.admin_token = ensure_admin_token(store, settings)
        state.secrets = SecretTable(store, load_key(settings.data_dir, settings.secret_key))
        state.control.secrets = state.secrets
        for plugin in map(ServerPlugin.of, plugins):
            if plugin.configure is not None:
                plugin.configure(state)
        state.control.resolver = state.resolver
        state.backend = backend or create_backend(
            settings.backend or DEFAULT_BACKEND,
            BackendContext(
                data_dir=settings.data_dir,
                options=dict(settings.backend_options),
                artifact_path=state.artifact_path,
                artifact_store=state.artifact_store,
            ),
        )
        state.reconciler = Reconciler(
            state.backend,
            desired=state.control.desired,
            service_names=store.service_names,
            write_status=store.write_status,
            resync_seconds=settings.resync_seconds,
        )
        state.control.on_change = state.reconciler.notify
        state.control.check_revision = state.backend.check_revision
        state.control.check_traffic = state.backend.check_traffic
        state.backend.on_change = state.reconciler.notify
        return state


def ensure_admin_token(store: Store, settings: ServerSettings) -> AdminToken:
    """First start: create an admin token (or adopt ``SOS_ADMIN_TOKEN``) and save it 0600."""
    path = settings.admin_token_file
    if settings.admin_token:
        if len(settings.admin_token) < 16:
            raise ValidationError("SOS_ADMIN_TOKEN must be at least 16 characters long")
        if store.token_for_secret(settings.admin_token) is None:
            name = "admin-env"
            taken = {t.name for t in store.list_tokens()}
            while name in taken:
                name += "-1"
            store.create_token(
                TokenSpec(name=name, role="admin"), actor=None, secret=settings.admin_token
            )
            log.info("admin token from SOS_ADMIN_TOKEN registered as %r", name)
        return AdminToken(path=None, created=False, from_env=True)
    if store.count_tokens("admin") > 0:
        return AdminToken(path=path if path.exists() else None, created=False)
    created = store.create_token(TokenSpec(name="admin", role="admin"), actor=None)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(created.secret + "\n")
    os.replace(tmp, path)
    log.info("created the admin token; it is in %s", path)
    return AdminToken(path=path, created=True)


def create_app(
    settings: ServerSettings | None = None,
    *,
    state: ServerState | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The SOS API server as an ASGI app (``uvicorn.run(create_app())``)."""
    from sos import __version__, ui
    from sos.server import logs, routes, secrets, tokens

    plugins = load_server_plugins(ROUTER_MODULES)
    if state is None:
        state = ServerState.open(settings or ServerSettings.from_env(), plugins=plugins)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert state.reconciler is not None
        await state.reconciler.start()
        try:
            yield
        finally:
            await state.reconciler.stop()

    app = FastAPI(
        title="SOS API",
        version=__version__,
        description="The Service Operator Service: services, immutable revisions, traffic, "
        "rollbacks, history and tokens. Every error has the shape "
        '`{"error": {"type", "message", "details"}}`.',
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.sos = state
    install_error_handlers(app)
    app.include_router(routes.router, prefix=API_PREFIX)
    app.include_router(logs.router, prefix=API_PREFIX)
    app.include_router(tokens.router, prefix=API_PREFIX)
    app.include_router(secrets.router, prefix=API_PREFIX)
    for plugin in plugins:
        if plugin.router is not None:
            app.include_router(plugin.router, prefix=API_PREFIX)
    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(ui.router)  # the web UI at /ui/ (and / redirects there)
    # outermost: no body is read before its token is checked, and none is unbounded
    app.add_middleware(
        RequestGuard,
        token_ok=lambda secret: state.store.token_for_secret(secret) is not None,
        key_ok=lambda method, path, secret: any(ok(method, path, secret) for ok in state.body_keys),
        max_bytes=max_request_bytes(),
    )
    return app
