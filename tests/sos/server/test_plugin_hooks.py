"""The plug-in points other parts build on: extra routers with a start-up ``configure`` hook,
and the artifact resolver that ``create_revision`` calls."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Request

from sos import Artifact, ArtifactMetadata, Client, ConflictError, NotFoundError, Revision, Service
from sos.config import ServerSettings
from sos.server import ServerState, create_app
from sos.server.auth import Principal

DIGEST = "sha256:" + "ab" * 32


class Catalog:
    """What the artifact store provides: name + version -> metadata, digest -> metadata."""

    def __init__(self) -> None:
        self.known = {
            ("sfix_service", "v1"): ArtifactMetadata(
                name="sfix_service",
                version="v1",
                language="python",
                runtime_version="3.11",
                entry_point="app:app",
                digest=DIGEST,
                size=10,
                created_by="ci",
                created_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        }

    def resolve(self, artifact: Artifact) -> ArtifactMetadata:
        try:
            return self.known[(artifact.name, artifact.version)]
        except KeyError:
            raise NotFoundError(
                f"no artifact {artifact.name} {artifact.version}: push it with `sos push`"
            ) from None

    def metadata(self, digest: str) -> ArtifactMetadata | None:
        return next((m for m in self.known.values() if m.digest == digest), None)


router = APIRouter(prefix="/test-plugin")


@router.get("")
def list_artifacts(request: Request, token: Principal) -> list[ArtifactMetadata]:
    return list(request.app.state.sos.extra["catalog"].known.values())


def configure(state: ServerState) -> None:
    catalog = Catalog()
    state.resolver = catalog
    state.extra["catalog"] = catalog


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    plugin = SimpleNamespace(router=router, configure=configure)
    settings = ServerSettings(data_dir=tmp_path, backend="fake")
    state = ServerState.open(settings, plugins=[plugin])
    app = create_app(state=state, routers=[plugin.router])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    token = (tmp_path / "admin-token").read_text().strip()
    with Client(f"http://127.0.0.1:{sock.getsockname()[1]}", token) as c:
        c.apply(Service(name="svc", team="recs"))
        yield c
    server.should_exit = True
    thread.join(timeout=10)


def test_create_revision_resolves_the_artifact_to_its_digest(client: Client) -> None:
    rev = client.create_revision(
        "svc", Revision(artifact=Artifact(name="sfix_service", version="v1"))
    )
    assert rev.artifact.digest == DIGEST
    desired = client.desired("svc")
    assert desired.artifacts[DIGEST].entry_point == "app:app"


def test_unknown_artifact_is_404_and_creates_nothing(client: Client) -> None:
    with pytest.raises(NotFoundError, match="push it with `sos push`"):
        client.create_revision("svc", Revision(artifact=Artifact(name="nope", version="v1")))
    assert client.list_revisions("svc") == []


def test_a_different_digest_than_the_stored_one_is_a_conflict(client: Client) -> None:
    wrong = Artifact(name="sfix_service", version="v1", digest="sha256:" + "cd" * 32)
    with pytest.raises(ConflictError, match="push the artifact you meant"):
        client.create_revision("svc", Revision(artifact=wrong))


def test_plugin_router_is_mounted_under_the_api_with_auth(client: Client) -> None:
    listed = httpx.get(
        f"{client.url}/api/v1/test-plugin", headers={"Authorization": f"Bearer {client.token}"}
    )
    assert listed.status_code == 200 and listed.json()[0]["digest"] == DIGEST
    assert httpx.get(f"{client.url}/api/v1/test-plugin").status_code == 401
