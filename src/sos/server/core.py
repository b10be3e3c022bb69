"""The control plane's rules, between the HTTP routes and the store.

Routes parse and authenticate; this module decides: who may change what, how revision
references resolve, what a valid traffic route is, how an artifact becomes a digest. Every
write goes through the store's compare-and-swap. When the caller sent a resource version the
write is conditional on it (a stale one is a 409); when it did not, the write applies under
the row lock to whatever is there then, which is what "apply" means. Authorization is
checked again on the locked row, so a team change in between cannot slip through.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import pydantic

from sos import traffic
from sos.errors import ConflictError, NotFoundError, ValidationError
from sos.launch import check_options
from sos.models import (
    Artifact,
    ArtifactMetadata,
    ConfigFile,
    EnvVar,
    Revision,
    RevisionSpec,
    Service,
    ServiceSpec,
    Token,
    TrafficRoute,
    normalize_revision_ref,
    summary_line,
)
from sos.runtime.base import DesiredService
from sos.server.auth import can_write
from sos.store import Store
from sos.store.secrets import SecretTable
from sos.store.store import Check, StaleWriteError

__all__ = ["ArtifactResolver", "ControlPlane"]

log = logging.getLogger(__name__)


class ArtifactResolver(Protocol):
    """The hook between revisions and the artifact store (issue 4 provides one).

    ``resolve`` turns ``Artifact(name, version)`` into the stored artifact's metadata (its
    digest above all) and raises ``sos.errors.NotFoundError`` with a helpful message when
    there is none; ``metadata`` looks an artifact up by digest for the backends. Both are
    called from worker threads, never on the event loop.
    """

    def resolve(self, artifact: Artifact) -> ArtifactMetadata: ...

    def metadata(self, digest: str) -> ArtifactMetadata | None: ...


def _noop(_name: str) -> None:
    return None


T = TypeVar("T")


class _Rehearsed(Exception):
    """Carries a rehearsed change's answer out of the transaction it rolls back."""

    def __init__(self, result: Any) -> None:
        self.result = result


class ControlPlane:
    def __init__(
        self,
        store: Store,
        *,
        resolver: ArtifactResolver | None = None,
        on_change: Callable[[str], None] = _noop,
    ) -> None:
        self.store = store
        self.resolver = resolver
        #: called with a service name after every change (the reconciler listens)
        self.on_change = on_change
        #: a team's secrets (the server sets it): checked when a revision uses one, and
        #: their values handed to the backend with the desired state
        self.secrets: SecretTable | None = None
        #: the backend's own refusals of a revision (the server sets it: Backend.check_revision)
        self.check_revision: Callable[[RevisionSpec], None] = lambda spec: None
        #: the backend's own refusals of a traffic route (Backend.check_traffic)
        self.check_traffic: Callable[[TrafficRoute], None] = lambda route: None
        #: the names changed inside ``one_change`` on this thread (told after the commit)
        self._batch = threading.local()

    # ------------------------------------------------------------------ helpers

    def _changed(self, name: str) -> None:
        batch: list[str] | None = getattr(self._batch, "names", None)
        if batch is None:
            self.on_change(name)
        else:
            batch.append(name)

    @contextmanager
    def one_change(self) -> Iterator[None]:
        """Make the writes inside one transaction of the store (all or nothing), and tell
        ``on_change`` once per service after it commits, not halfway through."""
        names: list[str] = []
        self._batch.names = names
        try:
            with self.store.write():
                yield
        finally:
            self._batch.names = None
        for name in dict.fromkeys(names):
            self.on_change(name)

    def rehearse(self, change: Callable[[], T]) -> T:
        """Run ``change`` (writes of this control plane) in one transaction and roll it
        back: its answer and its refusals are the real ones, and nothing is written (a dry
        run checked by the same code as the real change)."""
        try:
            with self.one_change():
                raise _Rehearsed(change())
        except _Rehearsed as done:
            result: T = done.result
            return result

    @staticmethod
    def _writer(token: Token, what: str) -> Check:
        """The authorization check a store write runs on the locked service."""

        def check(service: Service) -> None:
            can_write(token, service.team, what.format(name=service.name))

        return check

    def _check_env(
        self, env_vars: list[EnvVar], team: str | None, files: Sequence[ConfigFile] = ()
    ) -> None:
        """Refuse environment variables that cannot be deployed: a secret the team does not
        have (``team`` None: not known yet, a dry run of a new service), or a value that
        came back redacted from a read."""
        used = {var.secret for var in env_vars if var.secret}
        if used and team is not None:
            missing = self.secrets.missing(team, used) if self.secrets else sorted(used)
            if missing:
                raise ValidationError(
                    f"team {team!r} has no secret {missing[0]!r}"
                    + (f" (nor {', '.join(map(repr, missing[1:]))})" if missing[1:] else "")
                    + f": create it with `sos secret set {missing[0]} --team {team}` "
                    "(the value on standard input), or fix the name",
                    details={"field": "env_vars", "missing_secrets": missing},
                )
        hidden = [var.id for var in env_vars if var.redacted]
        hidden += [f.path for f in files if f.redacted]
        if hidden:
            raise ValidationError(
                f"{', '.join(hidden)} came back redacted (hidden from the token that read "
                "them): send the real values and contents",
                details={"field": "env_vars", "redacted": hidden},
            )

    def revision_ref(self, name: str, ref: str | int) -> str:
        try:
            return normalize_revision_ref(name, ref)
        except ValueError as exc:
            raise ValidationError(str(exc), details={"revision": str(ref)}) from None

    # ------------------------------------------------------------------ services

    def apply_service(self, token: Token, name: str, spec: ServiceSpec) -> tuple[Service, bool]:
        """Create or update a service; returns (service, created)."""
        if spec.name != name:
            raise ValidationError(
                f"the body names service {spec.name!r} but the URL names {name!r}; make them agree",
                details={"field": "name"},
            )
        can_write(token, spec.team, f"services of team {spec.team!r}")
        self._check_env(spec.env_vars, spec.team, spec.files)
        create_only = spec.resource_version == 0  # a service that does not exist is at 0
        for _ in range(3):
            try:
                service, changed = self.store.update_service(
                    spec,
                    expected_version=spec.resource_version,
                    actor=token.name,
                    check=self._writer(token, "service {name!r}"),
                )
            except StaleWriteError:
                if create_only:
                    raise _already_exists(name) from None
                raise
            except NotFoundError:
                if spec.resource_version:
                    raise ConflictError(
                        f"service {name!r} no longer exists (the write was based on "
                        f"resource_version {spec.resource_version}); re-read and retry",
                        details={"service": name},
                    ) from None
                try:
                    created = self.store.create_service(spec, actor=token.name)
                except ConflictError as exc:
                    if (exc.details or {}).get("taken_by"):
                        raise  # the name is another service's tag address: not a race
                    if create_only:
                        raise _already_exists(name) from None
                    continue  # created by someone else meanwhile: apply as an update
                self._changed(name)
                return created, True
            if changed:
                self._changed(name)
            return service, False
        raise ConflictError(f"service {name!r} changes too often right now; retry in a moment")

    def delete_service(self, token: Token, name: str, resource_version: int | None = None) -> None:
        self.store.delete_service(
            name,
            expected_version=resource_version,
            actor=token.name,
            check=self._writer(token, "service {name!r}"),
        )
        self._changed(name)

    # ------------------------------------------------------------------ revisions

    def create_revision(
        self, token: Token, name: str, spec: RevisionSpec, *, dry_run: bool = False
    ) -> Revision:
        """Create a revision. ``dry_run`` checks everything (the artifact above all) and
        writes nothing; the service need not exist yet (``sos deploy`` asks this before it
        applies a new service, so that a refused deploy leaves nothing behind)."""
        try:
            service: Service | None = self.store.get_service(name)
        except NotFoundError:
            if not dry_run:
                raise
            service = None
        if service is not None:
            can_write(token, service.team, f"service {name!r}")
        spec = spec.spec()
        if service is not None and (service.env_vars or service.files):
            # the revision records the merge; the merged files must fit the bounds too
            spec = spec.with_service_config(service.env_vars, service.files)
            try:
                RevisionSpec.model_validate(spec.model_dump())
            except pydantic.ValidationError as exc:
                raise ValidationError(
                    f"with service {name!r}'s own config merged in, the revision breaks a "
                    f"rule: {exc.errors()[0]['msg']}",
                    details={"field": "files"},
                ) from None
        self._check_env(spec.env_vars, service.team if service is not None else None, spec.files)
        if self.resolver is not None:
            metadata = self.resolver.resolve(spec.artifact)
            if spec.artifact.digest is not None and spec.artifact.digest != metadata.digest:
                raise ConflictError(
                    f"artifact {spec.artifact.name} {spec.artifact.version} has digest "
                    f"{metadata.digest}, not {spec.artifact.digest} as the revision says; "
                    "drop the digest or push the artifact you meant",
                    details={"field": "artifact.digest"},
                )
            check_options(spec, metadata)
            artifact = spec.artifact.model_copy(update={"digest": metadata.digest})
            spec = spec.model_copy(update={"artifact": artifact})
        self.check_revision(spec)
        if dry_run:
            return Revision.model_validate({**spec.model_dump(), "service": name})

        revision = self.store.create_revision(
            name,
            spec,
            expected_version=None,
            actor=token.name,
            check=self._writer(token, "service {name!r}"),
        )
        self._changed(name)
        return revision

    def get_revision(self, name: str, ref: str) -> Revision:
        return self.store.get_revision(name, self.revision_ref(name, ref))

    # ------------------------------------------------------------------ traffic

    def _normalize_route(
        self, name: str, route: TrafficRoute, latest: str | None = None
    ) -> TrafficRoute:
        normalized = traffic.normalize(name, route, latest=latest)
        wanted = {r.revision for r in normalized.routes} | {m.revision for m in normalized.shadow}
        traffic.require_existing(name, normalized, self.store.existing_revisions(name, wanted))
        return normalized

    def get_traffic(self, name: str) -> TrafficRoute:
        service = self.store.get_service(name)
        if service.traffic is None:
            raise NotFoundError(
                f"service {name!r} has no traffic yet: its first revision gets all of it "
                f"(`sos deploy` or `sos revisions {name}`)",
                details={"service": name},
            )
        return service.traffic

    def _refuse_failed(self, name: str, route: TrafficRoute) -> None:
        """Refuse to give a failed revision more traffic than it has now (Knative routes
        only to ready revisions): every request it got would be a 503."""
        current = traffic.shares(name, self.store.get_service(name).traffic)
        wanted = traffic.shares(name, route)
        more = {rev for rev, pct in wanted.items() if pct > current.get(rev, 0)}
        if not more:
            return
        for revision in self.store.list_revisions(name):
            if revision.id not in more or not revision.status.failed:
                continue
            status = revision.status
            why = summary_line(status.message) or "no message"
            raise ConflictError(
                f"revision {revision.id} failed ({status.reason}: {why}); giving it "
                f"{wanted[revision.id]}% of the traffic of {name!r} would answer those requests "
                f"with 503. See why with `sos logs {name} --revision {revision.number}`, fix it "
                "and deploy a new revision, or force the change (`sos traffic ... --force`, "
                "force=true)",
                details={
                    "revision": revision.id,
                    "reason": status.reason,
                    "message": why,
                },
            )

    def set_traffic(
        self,
        token: Token,
        name: str,
        route: TrafficRoute,
        *,
        force: bool = False,
        dry_run: bool = False,
    ) -> TrafficRoute:
        if dry_run:
            return self.rehearse(lambda: self.set_traffic(token, name, route, force=force))
        normalized = self._normalize_route(name, route)
        self.check_traffic(normalized)
        if not force:
            self._refuse_failed(name, normalized)
        service = self.store.set_traffic(
            name,
            normalized,
            expected_version=route.resource_version,
            actor=token.name,
            check=self._writer(token, "the traffic of service {name!r}"),
        )
        self._changed(name)
        assert service.traffic is not None
        return service.traffic

    def rollback(
        self, token: Token, name: str, resource_version: int | None = None
    ) -> TrafficRoute:
        service = self.store.rollback(
            name,
            expected_version=resource_version,
            actor=token.name,
            check=self._writer(token, "the traffic of service {name!r}"),
        )
        self._changed(name)
        assert service.traffic is not None
        return service.traffic

    # ------------------------------------------------------------------ desired state

    def desired(self, name: str) -> DesiredService | None:
        """The desired state of ``name``: with artifact metadata when a resolver knows it,
        and the values of the secrets its revisions use (for the backend only)."""
        desired = self.store.desired(name)
        if desired is None:
            return None
        artifacts: dict[str, ArtifactMetadata] = dict(desired.artifacts)
        resolver = self.resolver
        for revision in desired.revisions if resolver is not None else ():
            digest = revision.artifact.digest
            if digest and digest not in artifacts and resolver is not None:
                metadata = resolver.metadata(digest)
                if metadata is not None:
                    artifacts[digest] = metadata
        return DesiredService(
            service=desired.service,
            revisions=desired.revisions,
            traffic=desired.traffic,
            artifacts=artifacts,
            secrets=self._secret_values(desired),
        )

    def _secret_values(self, desired: DesiredService) -> dict[str, str]:
        used = desired.secrets_used()
        if not used or self.secrets is None:
            return {}
        return self.secrets.values(desired.service.team, used)

    def secret_users(self, team: str, secret: str) -> list[str]:
        """Revisions of ``team``'s services that use ``secret`` and serve traffic or carry
        a tag (deleting it would break them)."""
        users: list[str] = []
        for service in self.store.list_services(team):
            desired = self.store.desired(service.name)
            if desired is None:
                continue
            routed = desired.routable()
            users += [
                r.id
                for r in desired.revisions
                if r.id in routed and any(var.secret == secret for var in r.env_vars)
            ]
        return sorted(users)

    def secret_changed(self, team: str, secret: str) -> None:
        """A secret was rotated: the services that use it are applied again, so that
        instances started from now on get the new value."""
        for service in self.store.list_services(team):
            desired = self.store.desired(service.name)
            if desired is not None and secret in desired.secrets_used():
                self._changed(service.name)


def _already_exists(name: str) -> ConflictError:
    """The answer to a create-only write (resource_version 0) of a service that exists."""
    return ConflictError(
        f"service {name!r} already exists; pick another name, or read it and send its "
        "resource_version to change it",
        details={"service": name},
    )
