"""The Python client of the SOS API: the same powers as the CLI and the web UI.

>>> client = Client()                       # SOS_URL / SOS_TOKEN / `sos login` config
>>> client.apply(Service(name="sfix-service", team="recs"))
>>> rev = client.create_revision("sfix-service", Revision(artifact=Artifact(...)))
>>> client.wait_ready("sfix-service", rev.id)

Every method raises one family, ``sos.SOSError``, rebuilt from the server's JSON error, so
``except sos.ConflictError`` catches a stale write whichever side detected it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pydantic
from pydantic import BaseModel, TypeAdapter

from sos.config import load_client_config
from sos.errors import (
    AuthenticationError,
    NotFoundError,
    NotReadyError,
    RevisionFailedError,
    ServerUnavailableError,
    SOSError,
    ValidationError,
    error_from_payload,
)
from sos.models import (
    ArtifactMetadata,
    Build,
    DeployResult,
    DesiredService,
    HistoryEntry,
    LogRecord,
    Revision,
    RevisionSpec,
    Role,
    Rollout,
    RolloutStatus,
    Route,
    Secret,
    ServerInfo,
    Service,
    ServiceMetrics,
    ServiceSpec,
    ShadowReport,
    Token,
    TokenCreated,
    TokenSpec,
    TrafficRoute,
    normalize_revision_ref,
)

__all__ = ["Client"]

M = TypeVar("M", bound=BaseModel)

API = "/api/v1"


def _q(segment: str) -> str:
    """One URL path segment, so a name can never reach another endpoint."""
    return quote(segment, safe="")


def _ref(service: str, ref: str | int) -> str:
    try:
        return normalize_revision_ref(service, ref)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class Client:
    """A synchronous client (httpx). Use it as a context manager or call ``close()``."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        config = load_client_config(url, token)
        self.url = config.url
        self.token = config.token
        self._sleep = sleep
        self._monotonic = monotonic
        headers = {"User-Agent": "sos-client"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    # ------------------------------------------------------------------ plumbing

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        request = self._http.build_request(
            method,
            API + path,
            json=json_body,
            content=content,
            headers=headers,
            params={k: v for k, v in (params or {}).items() if v is not None},
        )
        try:
            try:
                response = self._http.send(request)
            except httpx.RemoteProtocolError:
                # a kept-alive connection the server closed meanwhile (it does after
                # refusing an upload it did not read): reads are safe to send once more
                if method not in ("GET", "HEAD"):
                    raise
                response = self._http.send(request)
        except httpx.TransportError as exc:
            raise ServerUnavailableError(
                f"cannot reach the SOS server at {self.url} ({exc.__class__.__name__}: {exc}); "
                "start one with `sos server`, or point SOS_URL (or `sos login`) at yours"
            ) from None
        if response.is_error:
            raise self._error(response)
        return response

    def _error(self, response: httpx.Response) -> SOSError:
        try:
            payload = response.json()
        except ValueError:
            payload = {"detail": response.text[:500] or response.reason_phrase}
        error = error_from_payload(response.status_code, payload)
        if isinstance(error, AuthenticationError) and not self.token:
            # the server's own words are for HTTP callers; this client's user sets a token
            error.message = (
                "no token configured: set SOS_TOKEN, or run `sos login URL --token TOKEN`"
            )
            error.args = (error.message,)
        return error

    def _get(self, path: str, model: type[M], **params: Any) -> M:
        return model.model_validate(self._request("GET", path, params=params).json())

    def _list(self, path: str, model: type[M], **params: Any) -> list[M]:
        data = self._request("GET", path, params=params).json()
        return TypeAdapter(list[model]).validate_python(data)  # type: ignore[valid-type]

    # ------------------------------------------------------------------ services

    def apply(self, service: Service | ServiceSpec) -> Service:
        """Create or update a service. A ``Service`` read from the server carries its
        ``resource_version``, which makes the write fail with ``ConflictError`` if someone
        else changed the service meanwhile."""
        spec = service.spec() if isinstance(service, Service) else service
        response = self._request(
            "PUT", f"/services/{_q(spec.name)}", json_body=spec.model_dump(mode="json")
        )
        return Service.model_validate(response.json())

    def get_service(self, name: str) -> Service:
        return self._get(f"/services/{_q(name)}", Service)

    def list_services(self, team: str | None = None) -> list[Service]:
        return self._list("/services", Service, team=team)

    def delete_service(self, name: str, resource_version: int | None = None) -> None:
        self._request(
            "DELETE", f"/services/{_q(name)}", params={"resource_version": resource_version}
        )

    def desired(self, name: str) -> DesiredService:
        """The desired state of a service as a backend sees it (for ``sos export``)."""
        data = self._request("GET", f"/services/{_q(name)}/desired").json()
        return TypeAdapter(DesiredService).validate_python(data)

    # ------------------------------------------------------------------ revisions

    def create_revision(
        self, name: str, revision: Revision | RevisionSpec, *, dry_run: bool = False
    ) -> Revision:
        """Create a new immutable revision of ``name``; returns it with its id. With
        ``dry_run`` the server checks everything (is the artifact pushed?) and writes
        nothing; ``name`` need not exist yet."""
        body = revision.spec().model_dump(mode="json")
        response = self._request(
            "POST",
            f"/services/{_q(name)}/revisions",
            json_body=body,
            params={"dry_run": "true"} if dry_run else None,
        )
        return Revision.model_validate(response.json())

    def deploy(
        self,
        service: Service | ServiceSpec,
        revision: Revision | RevisionSpec | None = None,
        traffic: TrafficRoute | None = None,
        *,
        force: bool = False,
        change_team: bool = False,
        dry_run: bool = False,
    ) -> DeployResult:
        """Apply ``service``, create ``revision`` and set ``traffic`` in one transaction:
        all of it or, when the server refuses any part, none of it.

        Service fields you did not set (``Service(name=..., team=...)`` sets no
        description) keep their current values. No revision is created when the newest
        one already has this spec (``force`` makes one anyway); ``result.revision`` is the
        one created or kept. In ``traffic``, ``"latest"`` names that revision. With
        ``dry_run`` the server does everything and rolls it back: ``result.steps`` says
        what would change."""
        fields = set(ServiceSpec.model_fields) & service.model_fields_set
        body: dict[str, Any] = {
            "service": service.model_dump(mode="json", include=fields | {"name", "team"}),
            "force": force,
            "change_team": change_team,
            "dry_run": dry_run,
        }
        if revision is not None:
            body["revision"] = revision.spec().model_dump(mode="json")
        if traffic is not None:
            body["traffic"] = traffic.model_dump(mode="json", exclude_none=True)
        response = self._request("POST", f"/services/{_q(service.name)}/deploy", json_body=body)
        return DeployResult.model_validate(response.json())

    def list_revisions(self, name: str) -> list[Revision]:
        return self._list(f"/services/{_q(name)}/revisions", Revision)

    def get_revision(self, name: str, ref: str | int) -> Revision:
        """``ref`` is a number (3), a padded number ("00003") or an id ("svc-00003")."""
        return self._get(f"/services/{_q(name)}/revisions/{_ref(name, ref)}", Revision)

    def wait_ready(
        self, name: str, ref: str | int, timeout: float = 120.0, interval: float = 0.5
    ) -> Revision:
        """Poll until the revision is ready; raise ``RevisionFailedError`` as soon as it has
        failed, ``NotReadyError`` (with its last reason) when ``timeout`` passes."""
        deadline = self._monotonic() + timeout
        while True:
            revision = self.get_revision(name, ref)
            status = revision.status
            if status.ready:
                return revision
            why = status.reason or "Pending"
            if status.message:
                why += f": {status.message}"
            if status.failed:
                raise RevisionFailedError(
                    f"revision {revision.id} failed ({why}); fix it and create a new revision",
                    details={"revision": revision.id, "reason": status.reason},
                )
            if self._monotonic() >= deadline:
                raise NotReadyError(
                    f"revision {revision.id} is not ready after {timeout:g}s ({why}); see "
                    f"`sos revision show {name} {revision.number}` and `sos logs {name}`",
                    details={"revision": revision.id, "reason": status.reason},
                )
            self._sleep(interval)

    def wait_observed(
        self, name: str, generation: int, timeout: float = 30.0, interval: float = 0.2
    ) -> Service:
        """Poll until the service's status reflects its spec at ``generation`` (the
        ``resource_version`` a change returned: ``apply``, ``create_revision``'s service,
        ``set_traffic``): then its URLs, traffic and readiness are about that change, not an
        earlier one. Raises ``NotReadyError`` when ``timeout`` passes first."""
        deadline = self._monotonic() + timeout
        while True:
            service = self.get_service(name)
            seen = service.status.observed_generation
            if seen is not None and seen >= generation:
                return service
            if self._monotonic() >= deadline:
                raise NotReadyError(
                    f"the status of service {name!r} has not caught up with its change "
                    f"(resource_version {generation}; status reflects {seen}) after "
                    f"{timeout:g}s: is the backend reachable? see `sos service show {name}`",
                    details={"service": name, "observed_generation": seen},
                )
            self._sleep(interval)

    # ------------------------------------------------------------------ traffic

    def get_traffic(self, name: str) -> TrafficRoute:
        return self._get(f"/services/{_q(name)}/traffic", TrafficRoute)

    def set_traffic(
        self,
        name: str,
        route: TrafficRoute | Mapping[str | int, int],
        *,
        force: bool = False,
        dry_run: bool = False,
    ) -> TrafficRoute:
        """Split traffic. ``route`` is a ``TrafficRoute`` or a mapping ``{3: 90, 2: 10}``.
        Set ``route.resource_version`` (from ``get_traffic``) to make it conditional.
        A route that gives a failed revision more traffic is refused (``ConflictError``)
        unless ``force`` is true. ``dry_run``: the server checks the route and changes
        nothing."""
        if not isinstance(route, TrafficRoute):
            try:
                route = TrafficRoute(
                    routes=[
                        Route(revision=_ref(name, ref), percent=pct) for ref, pct in route.items()
                    ]
                )
            except pydantic.ValidationError as exc:
                messages = [str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()]
                raise ValidationError("; ".join(messages)) from None
        response = self._request(
            "PUT",
            f"/services/{_q(name)}/traffic",
            json_body=route.model_dump(mode="json"),
            params={
                **({"force": "true"} if force else {}),
                **({"dry_run": "true"} if dry_run else {}),
            },
        )
        return TrafficRoute.model_validate(response.json())

    def start_rollout(self, name: str, rollout: Rollout) -> RolloutStatus:
        """Start a rollout that stops itself: the server steps ``rollout.to``'s share
        through ``rollout.steps`` and rolls back on a breach of its gates."""
        response = self._request(
            "POST", f"/services/{_q(name)}/rollout", json_body=rollout.model_dump(mode="json")
        )
        return RolloutStatus.model_validate(response.json())

    def get_rollout(self, name: str) -> RolloutStatus:
        """The service's rollout: ``state`` running, succeeded, rolled_back or stopped."""
        return self._get(f"/services/{_q(name)}/rollout", RolloutStatus)

    def stop_rollout(self, name: str) -> RolloutStatus:
        """Stop the running rollout where it is (the traffic stays as it is)."""
        response = self._request("POST", f"/services/{_q(name)}/rollout/stop")
        return RolloutStatus.model_validate(response.json())

    def shadow_report(self, name: str) -> ShadowReport:
        """What each shadow revision answered next to the primary (status, latency, and
        for item lists overlap@k, rank-biased overlap, top-1 agreement, empty rates)."""
        return self._get(f"/services/{_q(name)}/shadow", ShadowReport)

    def rollback(self, name: str, resource_version: int | None = None) -> TrafficRoute:
        """Move traffic back to the previous route in one atomic step."""
        response = self._request(
            "POST", f"/services/{_q(name)}/rollback", params={"resource_version": resource_version}
        )
        return TrafficRoute.model_validate(response.json())

    def history(self, name: str, limit: int = 100, before: int | None = None) -> list[HistoryEntry]:
        """Changes to a service, newest first."""
        return self._list(f"/services/{_q(name)}/history", HistoryEntry, limit=limit, before=before)

    # ------------------------------------------------------------------ metrics

    def metrics(
        self, name: str, window: str | float = "5m", revision: str | int | None = None
    ) -> ServiceMetrics:
        """Per-revision requests/s, errors/s, p50/p99 latency and instances over the last
        ``window`` (seconds, or ``"90s"``, ``"5m"``, up to ``"15m"``), as the server sampled
        them from its backend; ``revision`` (3, "00003" or an id) narrows it to one.
        ``available`` is False (with a ``message``) when the backend reports no metrics."""
        params: dict[str, Any] = {
            "window": f"{window:g}" if isinstance(window, int | float) else window
        }
        if revision is not None:
            params["revision"] = _ref(name, revision)
        return self._get(f"/services/{_q(name)}/metrics", ServiceMetrics, **params)

    # ------------------------------------------------------------------ logs

    def logs(
        self,
        name: str,
        revision: str | int | None = None,
        *,
        tail: int = 100,
        follow: bool = False,
    ) -> Iterator[LogRecord]:
        """The last ``tail`` log lines of a service (or one revision); with ``follow``, keep
        yielding new lines until the caller stops iterating."""
        params: dict[str, Any] = {"tail": tail, "follow": str(follow).lower()}
        if revision is not None:
            params["revision"] = _ref(name, revision)
        for data in self._ndjson(f"/services/{_q(name)}/logs", params, "log stream"):
            yield LogRecord.model_validate(data)

    def _ndjson(self, path: str, params: dict[str, Any], what: str) -> Iterator[Any]:
        """The JSON lines a streamed response holds, as they come (no read timeout)."""
        try:
            with self._http.stream(
                "GET",
                API + path,
                params=params,
                timeout=httpx.Timeout(self._http.timeout.connect, read=None),
            ) as response:
                if response.is_error:
                    response.read()
                    raise self._error(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.TransportError as exc:
            raise ServerUnavailableError(
                f"lost the {what} from {self.url} ({exc.__class__.__name__}: {exc})"
            ) from None

    # ------------------------------------------------------------------ auth

    def whoami(self) -> Token:
        return self._get("/whoami", Token)

    # ------------------------------------------------------------------ secrets

    def set_secret(self, name: str, value: str, *, team: str) -> Secret:
        """Create or rotate a secret of ``team``; its value is never returned."""
        response = self._request(
            "PUT", f"/teams/{_q(team)}/secrets/{_q(name)}", json_body={"value": value}
        )
        return Secret.model_validate(response.json())

    def list_secrets(self, team: str) -> list[Secret]:
        """``team``'s secrets: names and versions, never values."""
        return self._list(f"/teams/{_q(team)}/secrets", Secret)

    def delete_secret(self, name: str, *, team: str) -> None:
        """Delete a secret that no serving revision uses."""
        self._request("DELETE", f"/teams/{_q(team)}/secrets/{_q(name)}")

    def server_info(self) -> ServerInfo:
        """The server's version, backend, and how it keeps teams' code apart."""
        return self._get("/server", ServerInfo)

    def create_token(
        self,
        name: str,
        *,
        role: Role = "writer",
        team: str | None = None,
        expires_in: timedelta | None = None,
    ) -> TokenCreated:
        """Create a token (admins only); the returned ``secret`` is shown only this once.
        With ``expires_in`` it stops working that long after it is created."""
        seconds = int(expires_in.total_seconds()) if expires_in is not None else None
        spec = TokenSpec(name=name, role=role, team=team, expires_in_seconds=seconds)
        response = self._request("POST", "/tokens", json_body=spec.model_dump(mode="json"))
        return TokenCreated.model_validate(response.json())

    def list_tokens(self) -> list[Token]:
        return self._list("/tokens", Token)

    def revoke_token(self, ref: str) -> Token:
        """Revoke a token by id or name."""
        return Token.model_validate(self._request("DELETE", f"/tokens/{_q(ref)}").json())

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = self._request("GET", "/healthz").json()
        return data

    # ------------------------------------------------------------------ artifacts

    def push_artifact(
        self, path: str | Path, *, metadata: ArtifactMetadata | None = None
    ) -> ArtifactMetadata:
        """Upload an artifact file (streamed). ``metadata`` defaults to the JSON that
        ``sos build`` wrote beside it. Pushing the same bytes again is a no-op; other bytes
        under an existing version raise ``ConflictError``."""
        from sos.artifacts.base import CHUNK_SIZE, file_digest
        from sos.build.api import read_metadata

        file = Path(path)
        meta = metadata or read_metadata(file)
        digest = file_digest(file)
        if digest != meta.digest:
            raise ValidationError(
                f"{file} has digest {digest} but its metadata says {meta.digest}: the file "
                "changed after it was built; build it again"
            )
        encoded = base64.urlsafe_b64encode(meta.model_dump_json().encode()).decode("ascii")

        def chunks() -> Iterator[bytes]:
            with file.open("rb") as handle:
                yield from iter(lambda: handle.read(CHUNK_SIZE), b"")

        response = self._request(
            "PUT",
            f"/artifacts/{_q(meta.name)}/{_q(meta.version)}",
            content=chunks(),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(file.stat().st_size),
                "X-SOS-Digest": digest,
                "X-SOS-Metadata": encoded.rstrip("="),
            },
        )
        return ArtifactMetadata.model_validate(response.json())

    def list_artifacts(self, name: str | None = None) -> list[ArtifactMetadata]:
        return self._list("/artifacts", ArtifactMetadata, name=name)

    def get_artifact(self, name: str, version: str) -> ArtifactMetadata:
        return self._get(f"/artifacts/{_q(name)}/{_q(version)}", ArtifactMetadata)

    def download_artifact(self, digest: str, dest: str | Path) -> Path:
        """Save the bytes of ``digest`` to ``dest``, checking them on the way."""
        import hashlib

        target = Path(dest)
        partial = target.with_name(f".{target.name}.partial")
        sha = hashlib.sha256()
        try:
            with self._http.stream("GET", f"{API}/blobs/{_q(digest)}") as response:
                if response.is_error:
                    response.read()
                    raise self._error(response)
                with partial.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        sha.update(chunk)
                        handle.write(chunk)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise ServerUnavailableError(
                f"download of {digest} from {self.url} failed: {exc}"
            ) from None
        if f"sha256:{sha.hexdigest()}" != digest:
            partial.unlink(missing_ok=True)
            raise ValidationError(f"the bytes downloaded for {digest} do not match it; try again")
        partial.replace(target)
        return target

    # ------------------------------------------------------------------ remote builds

    def start_build(
        self,
        path: str | Path,
        *,
        type: str | None = None,
        frozen: bool = False,
        no_cache: bool = False,
        progress: Any = None,
    ) -> Build:
        """Check the project in ``path`` here (every integrity check of ``sos build``, so
        a broken project fails at once), pack its source (``sos.build.source``) and upload
        it: the server queues its build (or, for source it built before with the same
        builder, reuses that artifact at once unless ``no_cache``). Returns the ``Build``."""
        from sos.build.api import inspect_project
        from sos.build.source import pack_source

        root = Path(path).resolve()
        _begin(progress, "Check the project")
        project = inspect_project(root, type=type)
        _end(progress, "Check the project", f"{project.builder} {project.name or ''}".strip())
        _begin(progress, "Pack and upload the source")
        local = [
            d.local_path
            for d in project.details.get("dependencies", [])
            if getattr(d, "local_path", None) is not None
            and not d.local_path.resolve().is_relative_to(root)
        ]
        packed = pack_source(root, local=local)
        params = {
            "type": type or project.builder,
            "frozen": str(frozen).lower(),
            "project": packed.project,
        }
        headers = {"X-SOS-Source-Digest": packed.digest}
        if not no_cache:  # built before? then nothing is compressed or sent
            try:
                response = self._request(
                    "POST", "/builds", params={**params, "reuse_only": "true"}, headers=headers
                )
                _end(progress, "Pack and upload the source", "built before: not uploaded")
                return Build.model_validate(response.json())
            except NotFoundError:
                pass
        response = self._request(
            "POST",
            "/builds",
            content=packed.data,
            params={**params, "no_cache": str(no_cache).lower()},
            headers={**headers, "Content-Type": "application/octet-stream"},
        )
        _end(
            progress,
            "Pack and upload the source",
            f"{len(packed.files)} files, {packed.size} bytes",
        )
        return Build.model_validate(response.json())

    def get_build(self, build_id: str) -> Build:
        return self._get(f"/builds/{_q(build_id)}", Build)

    def list_builds(self, limit: int = 100) -> list[Build]:
        """The builds this token may see (its team's and its own; admins all), newest
        first, at most ``limit``."""
        return self._list("/builds", Build, limit=limit)

    def cancel_build(self, build_id: str) -> Build:
        """Take a queued build out of the queue, or stop a running one."""
        return Build.model_validate(self._request("POST", f"/builds/{_q(build_id)}/cancel").json())

    def build_events(self, build_id: str, *, follow: bool = True) -> Iterator[dict[str, Any]]:
        """The build's events (``plan``, ``begin``, ``output``, ``end``, ``state``), from its
        start; with ``follow``, until it ends."""
        params = {"follow": str(follow).lower()}
        yield from self._ndjson(f"/builds/{_q(build_id)}/log", params, "build log stream")

    def build_lock(self, build_id: str) -> str:
        """The text of the lock file the build installed from (``Build.lock``)."""
        return self._request("GET", f"/builds/{_q(build_id)}/lock").text

    def build_log(self, build_id: str) -> str:
        """The build's log as text (what its tools printed, and the steps)."""
        return "\n".join(
            str(e["line"]) for e in self.build_events(build_id, follow=False) if "line" in e
        )

    def wait_build(self, build_id: str, *, progress: Any = None) -> Build:
        """Follow the build's log until it ends, telling ``progress`` (a
        ``sos.build.BuildProgress``) what happens; returns the finished ``Build``."""
        queued: str | None = None
        for event in self.build_events(build_id, follow=True):
            kind = event.get("event")
            if progress is None:
                continue
            if kind == "state":
                if queued is not None:
                    _end(progress, queued)
                    queued = None
                if event.get("state") == "queued":
                    queued = f"Queued (position {event.get('position')})"
                    _begin(progress, queued)
            elif kind == "plan":
                progress.plan([str(s) for s in event.get("steps", [])])
            elif kind == "begin":
                progress.begin(str(event.get("step", "")))
            elif kind == "end":
                progress.end(str(event.get("step", "")), str(event.get("detail", "")))
            elif kind == "output":
                progress.output(str(event.get("line", "")))
        return self.get_build(build_id)

    def build(
        self,
        path: str | Path,
        *,
        remote: bool = True,
        type: str | None = None,
        frozen: bool = False,
        no_cache: bool = False,
        progress: Any = None,
    ) -> Build:
        """Build the project in ``path`` on the server (``remote``: the only kind this
        client starts; ``sos.build.build`` builds here) and wait for it. Returns the
        succeeded ``Build`` (its ``artifact`` is in the store); raises
        ``sos.build.BuildFailedError`` with the reason and the end of the log otherwise.

        A lock file the build resolved is written beside the project as ``sos.build.build``
        would (``bring_back_lock``); the ``warnings`` of the ``Build`` returned say so
        once, naming it here."""
        if not remote:
            raise ValidationError(
                "Client.build builds on the server; build here with sos.build.build(path)"
            )
        from sos.build.errors import BuildFailedError

        started = self.start_build(
            path, type=type, frozen=frozen, no_cache=no_cache, progress=progress
        )
        done = self.wait_build(started.id, progress=progress)
        if done.state != "succeeded":
            tail = self.build_log(done.id).splitlines()[-30:]
            raise BuildFailedError(
                f"remote build {done.id} {done.state.replace('_', ' ')}: {done.reason}",
                output="\n".join(tail),
            )
        return self.bring_back_lock(path, done)

    def bring_back_lock(self, path: str | Path, build: Build) -> Build:
        """Write the lock file the remote ``build`` resolved (``Build.lock``: written) into
        the project in ``path``, by the rules of a local build: when the project has none,
        or still has the one it uploaded and the build found stale; never over one that
        differs from what was uploaded (it changed since, or was not packed: the warning
        says so). Returns ``build`` with its ``warnings`` naming the file here."""
        import hashlib

        from sos.artifacts.base import file_digest
        from sos.build.registry import lock_file_names

        lock = build.lock
        if lock is None or not lock.written or build.frozen:
            return build
        if lock.file not in lock_file_names():  # not a lock file: never written here
            return build
        target = Path(path).resolve() / lock.file
        said = [w for w in build.warnings if f"into {lock.file}" in w]
        warnings = [w for w in build.warnings if w not in said]
        here = file_digest(target) if target.is_file() else None
        if here == lock.uploaded:
            data = self.build_lock(build.id).encode("utf-8")
            if f"sha256:{hashlib.sha256(data).hexdigest()}" != lock.sha256:
                raise ValidationError(
                    f"the {lock.file} downloaded for build {build.id} does not match its "
                    "digest: it changed on the way; try again"
                )
            partial = target.with_name(f".{lock.file}.tmp")
            partial.write_bytes(data)
            partial.replace(target)
            warnings += [w.replace(f"into {lock.file}", f"into {target}", 1) for w in said]
        elif here != lock.sha256:
            warnings.append(
                f"the server resolved its own {lock.file}, but {target} is not the one "
                "uploaded (it changed since, or was left out of the source): it is kept as "
                f"it is; `sos builds {build.id} --lock` prints the server's"
            )
        return build.model_copy(update={"warnings": warnings})


def _begin(progress: Any, step: str) -> None:
    if progress is not None:
        progress.begin(step)


def _end(progress: Any, step: str, detail: str = "") -> None:
    if progress is not None:
        progress.end(step, detail)
