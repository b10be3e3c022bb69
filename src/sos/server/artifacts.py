"""The artifact store on the server: push, list, get, download by digest.

::

    PUT  /api/v1/artifacts/{name}/{version}   body: the artifact's bytes, streamed
         X-SOS-Digest: sha256:<hex>            required: what the bytes must hash to
         X-SOS-Metadata: <base64url JSON>      the ArtifactMetadata sos build wrote
    GET  /api/v1/artifacts[?name=]            list (by name, oldest first)
    GET  /api/v1/artifacts/{name}/{version}   metadata of one version
    GET  /api/v1/blobs/{digest}               the bytes, by digest (runtimes download here)

Rules: uploads are streamed to the store (never held in memory) and cut off at the size
limit (``SOS_MAX_ARTIFACT_BYTES``, default 1 GiB: 413); the bytes must hash to
``X-SOS-Digest`` (else 422); zip artifacts (``.pyz``, ``.jar``) with entries that could land
outside their directory are refused (422); a name+version is immutable: other bytes are a
409, the same bytes again a no-op (200; a new version is 201).

Who may push: writers and admins; readers may only read. An artifact *name* belongs to the
team of the writer who first pushed it: other teams' writers cannot add versions to it (an
admin's first push leaves the name open to every writer). Any valid token may read and
download, since revisions of any team may run shared artifacts.

Storage: ``SOS_ARTIFACT_STORE`` is ``local`` (default: ``<data dir>/artifacts``) or
``s3://bucket/prefix`` for an S3-compatible object store (``SOS_S3_ENDPOINT_URL`` and the
usual ``AWS_*`` credentials; needs ``pip install flight-sos[s3]``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool

from sos.artifacts.base import CHUNK_SIZE, ArtifactStore
from sos.artifacts.local import LocalArtifactStore
from sos.artifacts.safety import check_digest, check_name, check_version, check_zip_entries
from sos.errors import (
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ValidationError,
)
from sos.models import Artifact, ArtifactMetadata, Token
from sos.server.auth import Principal
from sos.server.errors import BINARY_BODY, ERROR_RESPONSES
from sos.store.artifacts import ArtifactTable

if TYPE_CHECKING:
    from sos.server.app import ServerState

__all__ = [
    "ArtifactService",
    "StoreResolver",
    "configure",
    "router",
    "store_file",
    "stored_for",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1024**3
ZIP_LANGUAGES = frozenset({"python", "jvm"})

router = APIRouter(tags=["artifacts"], responses=ERROR_RESPONSES)

Name = Annotated[str, PathParam(description="Artifact name, e.g. sfix_service", max_length=100)]
Version = Annotated[str, PathParam(description="Artifact version, e.g. 1.2.0", max_length=64)]


class StoreResolver:
    """``sos.server.core.ArtifactResolver`` backed by the artifacts table."""

    def __init__(self, table: ArtifactTable) -> None:
        self.table = table

    def resolve(self, artifact: Artifact) -> ArtifactMetadata:
        found = self.table.get(artifact.name, artifact.version)
        if found is not None:
            return found
        known = [m.version for m in self.table.list(artifact.name)]
        hint = (
            f"known versions: {', '.join(known[-10:])}"
            if known
            else "no version of it has been pushed"
        )
        raise NotFoundError(
            f"artifact {artifact.name} {artifact.version} is not in the artifact store "
            f"({hint}); push it first with `sos push FILE` or `sos build --push`",
            details={"name": artifact.name, "version": artifact.version, "known": known},
        )

    def metadata(self, digest: str) -> ArtifactMetadata | None:
        return self.table.by_digest(digest)


@dataclass
class ArtifactService:
    """What the routes share: the blob store, the metadata table and the limits."""

    store: ArtifactStore
    table: ArtifactTable
    max_bytes: int
    cache_dir: Path

    def path_for(self, digest: str) -> Path:
        """A local file holding ``digest`` (downloaded once from a remote store)."""
        check_digest(digest)
        local = self.store.local_path(digest)
        if local is not None:
            return local
        target = self.cache_dir / digest.removeprefix("sha256:")
        if not target.exists():
            self.store.get(digest, target)
        return target


def max_artifact_bytes() -> int:
    """``SOS_MAX_ARTIFACT_BYTES``: the largest artifact the store takes."""
    raw = os.environ.get("SOS_MAX_ARTIFACT_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"SOS_MAX_ARTIFACT_BYTES={raw!r} must be a number of bytes") from None
    if value <= 0:
        raise ValidationError("SOS_MAX_ARTIFACT_BYTES must be above 0")
    return value


def _open_store(data_dir: Path) -> ArtifactStore:
    spec = os.environ.get("SOS_ARTIFACT_STORE", "local").strip() or "local"
    if spec == "local":
        store = LocalArtifactStore(data_dir / "artifacts")
        store.clean_tmp()
        return store
    if spec.startswith("s3://"):
        from sos.artifacts.s3 import S3ArtifactStore

        bucket, _, prefix = spec.removeprefix("s3://").partition("/")
        return S3ArtifactStore(
            bucket,
            prefix=prefix,
            endpoint_url=os.environ.get("SOS_S3_ENDPOINT_URL") or None,
            staging_dir=data_dir / "artifacts-staging",
        )
    raise ValidationError(
        f"SOS_ARTIFACT_STORE={spec!r} is unknown: use 'local' or 's3://bucket/prefix'"
    )


def configure(state: ServerState) -> None:
    """Start-up hook of this server plug-in (``sos.server.plugins``): open the store, set
    the resolver."""
    service = ArtifactService(
        store=_open_store(state.settings.data_dir),
        table=ArtifactTable(state.store),
        max_bytes=max_artifact_bytes(),
        cache_dir=state.settings.data_dir / "artifact-cache",
    )
    state.extra["artifacts"] = service
    state.artifact_store = service.store
    state.artifact_path = service.path_for
    state.resolver = StoreResolver(service.table)


def _service(request: Request) -> ArtifactService:
    state = request.app.state.sos
    service = state.extra.get("artifacts")
    if service is None:  # a server started without running the plug-in hooks
        configure(state)
        service = state.extra["artifacts"]
    assert isinstance(service, ArtifactService)
    return service


def _decode_metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        raise ValidationError(
            "X-SOS-Metadata is missing: send the artifact's metadata (what sos build wrote) "
            "as base64url-encoded JSON; `sos push` does this for you"
        )
    try:
        padded = raw + "=" * (-len(raw) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError):
        raise ValidationError("X-SOS-Metadata is not base64url-encoded JSON") from None
    if not isinstance(data, dict):
        raise ValidationError("X-SOS-Metadata must hold a JSON object")
    return data


def _may_push(token: Token, name: str, table: ArtifactTable) -> str | None:
    """Raise unless ``token`` may add versions to ``name``; returns the team to record."""
    if token.role == "reader":
        raise PermissionDeniedError(
            f"token {token.name!r} is read-only (role reader) and cannot push artifacts; "
            "ask an admin for a writer token",
            details={"role": token.role},
        )
    exists, owner = table.owner(name)
    if token.role == "admin":
        return owner if exists else None
    if exists and owner is not None and owner != token.team:
        raise PermissionDeniedError(
            f"artifact {name!r} belongs to team {owner!r} (its first push); token "
            f"{token.name!r} of team {token.team!r} cannot add versions to it: pick another "
            "name, or ask that team or an admin to push it",
            details={"owner": owner, "team": token.team},
        )
    return owner if exists else token.team


@router.put(
    "/artifacts/{name}/{version}",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": ArtifactMetadata, "description": "These bytes were already there"},
        413: ERROR_RESPONSES[422] | {"description": "Larger than the server's limit"},
    },
    openapi_extra=BINARY_BODY,
)
async def push_artifact(
    request: Request,
    response: Response,
    token: Principal,
    name: Name,
    version: Version,
    x_sos_digest: Annotated[str | None, Header(description="sha256:<hex> of the body")] = None,
    x_sos_metadata: Annotated[
        str | None, Header(description="base64url JSON of the ArtifactMetadata")
    ] = None,
    content_length: Annotated[int | None, Header()] = None,
) -> ArtifactMetadata:
    """Upload an artifact (the raw bytes as the body). Same bytes again: 200, no change."""
    check_name(name)
    check_version(version)
    if not x_sos_digest:
        raise ValidationError("X-SOS-Digest is missing: send the sha256 of the bytes you push")
    expected = check_digest(x_sos_digest)
    fields = _decode_metadata(x_sos_metadata)
    service = _service(request)
    team = await run_in_threadpool(_may_push, token, name, service.table)
    if content_length is not None and content_length > service.max_bytes:
        raise PayloadTooLargeError(
            f"the artifact is {content_length} bytes, above the server's limit of "
            f"{service.max_bytes} bytes (SOS_MAX_ARTIFACT_BYTES)",
            details={"limit": service.max_bytes, "size": content_length},
        )
    existing = await run_in_threadpool(service.table.get, name, version)
    if existing is not None and existing.digest == expected:
        response.status_code = status.HTTP_200_OK
        return existing  # the same bytes are already stored and were checked then
    if existing is not None:
        from sos.artifacts.catalog import check_immutable

        check_immutable(existing, expected)

    upload = await run_in_threadpool(service.store.begin_upload, max_size=service.max_bytes)
    try:
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(upload.write, chunk)
        blob = await run_in_threadpool(upload.commit, expected)
    finally:
        await run_in_threadpool(upload.close)

    try:
        fields.update(name=name, version=version, digest=blob.digest, size=blob.size)
        fields.pop("pushed_by", None)
        fields.pop("pushed_at", None)
        try:
            meta = ArtifactMetadata.model_validate(fields)
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValidationError(
                f"X-SOS-Metadata: {where}: {first['msg']}", details={"field": where}
            ) from None
        if meta.language in ZIP_LANGUAGES:
            await run_in_threadpool(_check_zip, service, blob.digest, f"{name} {version}")
        recorded, created = await run_in_threadpool(
            lambda: service.table.add(meta, pushed_by=token.name, team=team)
        )
    except (ValidationError, ConflictError):
        if blob.created and not await run_in_threadpool(service.table.digest_in_use, blob.digest):
            await run_in_threadpool(service.store.delete, blob.digest)
        raise
    if not created:
        response.status_code = status.HTTP_200_OK
    log.info("artifact %s %s %s by %s", name, version, blob.digest, token.name)
    return recorded


def stored_for(state: ServerState, meta: ArtifactMetadata, token: Token) -> ArtifactMetadata | None:
    """``meta``'s version as the store holds it, if it holds these bytes, for ``token`` to
    build again (raises unless it may push the name); None when it is gone or other."""
    service = state.extra.get("artifacts")
    if not isinstance(service, ArtifactService):
        return None
    _may_push(token, meta.name, service.table)
    existing = service.table.get(meta.name, meta.version)
    if existing is None or existing.digest != meta.digest:
        return None
    return existing if service.store.exists(meta.digest) else None


def store_file(
    state: ServerState, file: Path, fields: dict[str, Any], token: Token
) -> ArtifactMetadata:
    """Put an artifact the server made itself (a remote build's) in the store, under the
    rules of a push by ``token``: who may push the name, immutable versions, safe zips."""
    from sos.artifacts.base import file_digest
    from sos.artifacts.catalog import check_immutable

    service = state.extra.get("artifacts")
    if service is None:
        configure(state)
        service = state.extra["artifacts"]
    assert isinstance(service, ArtifactService)
    name, version = str(fields["name"]), str(fields["version"])
    check_name(name)
    check_version(version)
    team = _may_push(token, name, service.table)
    digest = file_digest(file)
    existing = service.table.get(name, version)
    if existing is not None and existing.digest == digest:
        return existing
    if existing is not None:
        check_immutable(existing, digest)
    upload = service.store.begin_upload(max_size=service.max_bytes)
    try:
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
                upload.write(chunk)
        blob = upload.commit(digest)
    finally:
        upload.close()
    try:
        fields = {**fields, "digest": blob.digest, "size": blob.size}
        fields.pop("pushed_by", None)
        fields.pop("pushed_at", None)
        meta = ArtifactMetadata.model_validate(fields)
        if meta.language in ZIP_LANGUAGES:
            _check_zip(service, blob.digest, f"{name} {version}")
        recorded, _ = service.table.add(meta, pushed_by=token.name, team=team)
    except (ValidationError, ConflictError, PydanticValidationError):
        if blob.created and not service.table.digest_in_use(blob.digest):
            service.store.delete(blob.digest)
        raise
    log.info("artifact %s %s %s built for %s", name, version, blob.digest, token.name)
    return recorded


def _check_zip(service: ArtifactService, digest: str, what: str) -> None:
    local = service.store.local_path(digest)
    if local is not None:
        check_zip_entries(local, what=f"artifact {what}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        check_zip_entries(
            service.store.get(digest, Path(tmp) / "artifact"), what=f"artifact {what}"
        )


@router.get("/artifacts")
def list_artifacts(
    request: Request,
    token: Principal,
    name: Annotated[
        str | None, Query(description="Only this artifact name", max_length=100)
    ] = None,
) -> list[ArtifactMetadata]:
    """Artifacts by name, each name's versions oldest first."""
    if name is not None:
        check_name(name)
    return _service(request).table.list(name)


@router.get("/artifacts/{name}/{version}")
def get_artifact(
    request: Request, token: Principal, name: Name, version: Version
) -> ArtifactMetadata:
    check_name(name)
    check_version(version)
    service = _service(request)
    return StoreResolver(service.table).resolve(Artifact(name=name, version=version))


@router.get(
    "/blobs/{digest}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_blob(request: Request, token: Principal, digest: str) -> Response:
    """The bytes of an artifact, by digest (what runtimes download)."""
    check_digest(digest)
    service = _service(request)
    if not service.store.exists(digest):
        raise NotFoundError(f"no artifact with digest {digest} in the store")
    headers = {"X-SOS-Digest": digest, "Cache-Control": "public, max-age=31536000, immutable"}
    local = service.store.local_path(digest)
    if local is not None:
        return FileResponse(local, media_type="application/octet-stream", headers=headers)

    def chunks() -> Iterator[bytes]:
        with service.store.open(digest) as handle:
            yield from iter(lambda: handle.read(CHUNK_SIZE), b"")

    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)
