"""The SQL store: the single source of truth of SOS, and the only code that speaks SQL.

Every write that changes a service locks its row (``SELECT ... FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite) and is a compare-and-swap on ``services.resource_version``
(``UPDATE services ... WHERE name = ? AND resource_version = ?``). A write given a resource
version is conditional on it: two writers, in one process or many, can never both win
against the same version; the loser gets ``StaleWriteError`` (a ``ConflictError``, HTTP
409). A write without one applies to whatever it finds under the lock. History rows are
written in the same transaction as the change they describe.

Methods are synchronous (SQLAlchemy Core); async callers run them in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.pool import StaticPool

from sos import traffic
from sos.errors import ConflictError, NotFoundError, ServerUnavailableError, ValidationError
from sos.models import (
    TRUSTED_SOURCE,
    EnvVar,
    HistoryEntry,
    Revision,
    RevisionSpec,
    RevisionStatus,
    Role,
    Route,
    Service,
    ServiceSpec,
    ServiceStatus,
    Token,
    TokenCreated,
    TokenSpec,
    TrafficRoute,
    revision_id,
)
from sos.runtime.base import DesiredService
from sos.store import tables as t

__all__ = ["Check", "Clock", "StaleWriteError", "Store", "hash_secret", "normalize_database_url"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_TRUSTED = {TRUSTED_SOURCE: True}
#: called with the locked service inside a write; raises to veto it (e.g. PermissionDenied)
Check = Callable[[Service], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _dump_env(env: list[EnvVar]) -> list[dict[str, Any]]:
    return [var.model_dump(mode="json", exclude={"redacted"}, exclude_none=True) for var in env]


def _env_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """``env: set A, B; removed C`` (names only: history is read by other teams too)."""
    old = {var["id"]: var for var in before["env_vars"]}
    new = {var["id"]: var for var in after["env_vars"]}
    set_ = sorted(k for k in new if old.get(k) != new[k])
    gone = sorted(k for k in old if k not in new)
    parts = ([f"set {', '.join(set_)}"] if set_ else []) + (
        [f"removed {', '.join(gone)}"] if gone else []
    )
    return "env " + "; ".join(parts)


#: when a service's latest revision was created (a column for service queries)
_LATEST_REVISION_AT = (
    select(t.revisions.c.created_at)
    .where(
        (t.revisions.c.service == t.services.c.name)
        & (t.revisions.c.number == t.services.c.revision_counter)
    )
    .correlate(t.services)
    .scalar_subquery()
    .label("latest_revision_at")
)

#: how stale a token's ``last_used_at`` may be before a request writes it again
LAST_USED_GRANULARITY = timedelta(minutes=1)


def hash_secret(secret: str) -> str:
    """How token secrets are stored: sha256 hex of a high-entropy secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


class StaleWriteError(ConflictError):
    """A compare-and-swap lost: the service changed since the given resource version."""


def normalize_database_url(url: str) -> str:
    """Accept the URLs people write (``postgresql://...``) and pick the installed driver."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _shown(url: str) -> str:
    """A database URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def _make_engine(url: str) -> Engine:
    parsed = make_url(normalize_database_url(url))
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, future=True)
    memory = parsed.database in (None, "", ":memory:")
    engine = create_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=StaticPool if memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy emit BEGIN itself, so writes can take the lock up front
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            # in WAL mode NORMAL is corruption-safe; a power cut may lose the last commits
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # BEGIN IMMEDIATE takes the write lock first, so a read-then-write transaction
        # never fails halfway with "database is locked" when another writer got in between
        write = conn.get_execution_options().get("sos_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _dump_route(route: TrafficRoute | None) -> dict[str, Any] | None:
    if route is None:
        return None
    data: dict[str, Any] = {
        "routes": [r.model_dump(mode="json", exclude_none=True) for r in route.routes]
    }
    if route.split_by:
        data["split_by"] = route.split_by
    if route.shadow:
        data["shadow"] = [m.model_dump(mode="json", exclude_none=True) for m in route.shadow]
    return data


def _load_route(data: Any, resource_version: int | None) -> TrafficRoute | None:
    if not data:
        return None
    return TrafficRoute.model_validate({**data, "resource_version": resource_version})


def _tags(data: Any) -> set[str]:
    """The tags of a stored route (JSON), without validating it."""
    if not isinstance(data, dict):
        return set()
    return {str(r["tag"]) for r in data.get("routes", []) if isinstance(r, dict) and r.get("tag")}


def _route_tags(route: TrafficRoute | None) -> set[str]:
    return {r.tag for r in route.routes if r.tag} if route is not None else set()


route_summary = traffic.describe


class Store:
    """Services, revisions, traffic, history and tokens in one SQL database."""

    def __init__(self, url: str, *, clock: Clock = _utcnow) -> None:
        self.url = normalize_database_url(url)
        try:
            self.engine = _make_engine(self.url)
        except (ArgumentError, ImportError) as exc:
            raise ValidationError(
                f"cannot use database URL {_shown(self.url)}: {exc}; write it like "
                "sqlite:////path/sos.db or postgresql://user:password@host:5432/sos"
            ) from None
        self.clock = clock
        # SQLite has one writer at a time; queueing writers of this process on a lock is
        # much faster than SQLite's busy-wait (other processes still wait on busy_timeout)
        sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock: threading.Lock | contextlib.nullcontext[None] = (
            threading.Lock() if sqlite else contextlib.nullcontext()
        )
        #: the write transaction this thread has open (``conn``), which nested ones join
        self._open = threading.local()

    # ------------------------------------------------------------------ plumbing

    def migrate(self) -> None:
        """Bring the schema up to date (Alembic, migrations shipped inside the package)."""
        from sos.store.migrate import upgrade

        try:
            upgrade(self.engine)
        except (OperationalError, InterfaceError) as exc:
            raise ServerUnavailableError(
                f"cannot open the database {_shown(self.url)}: {str(exc.orig).strip()}; "
                "check --database-url / SOS_DATABASE_URL and that the database server is up"
            ) from None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (for modules of ``sos.store`` only); inside ``write`` on the
        same thread, the write's own connection (a read sees what the write did so far)."""
        outer: Connection | None = getattr(self._open, "conn", None)
        if outer is not None:
            yield outer
            return
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock up front (BEGIN IMMEDIATE).

        Writes nest: a ``write`` inside another on the same thread is a savepoint of the
        outer transaction, so several store writes can make one change that commits, or
        fails, as a whole (a deploy: service, revision and traffic)."""
        outer: Connection | None = getattr(self._open, "conn", None)
        if outer is not None:
            with outer.begin_nested():
                yield outer
            return
        with self._write_lock, self.engine.connect() as conn:
            conn.execution_options(sos_write=True)
            with conn.begin():
                self._open.conn = conn
                try:
                    yield conn
                finally:
                    self._open.conn = None

    def _record(
        self,
        conn: Connection,
        service: str,
        actor: str,
        action: str,
        summary: str,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None:
        conn.execute(
            insert(t.history).values(
                service=service,
                at=self.clock(),
                actor=actor,
                action=action,
                summary=summary,
                before=before,
                after=after,
            )
        )

    # ------------------------------------------------------------------ services

    def _service_row(self, conn: Connection, name: str, *, lock: bool = False) -> Row[Any]:
        query = select(t.services).where(t.services.c.name == name)
        if lock:  # PostgreSQL: hold the row until commit (SQLite: BEGIN IMMEDIATE did it)
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(
                f"service {name!r} does not exist: list services with `sos services`",
                details={"service": name},
            )
        return row

    @staticmethod
    def _to_service(row: Row[Any]) -> Service:
        m = row._mapping
        counter = m["revision_counter"]
        return Service(
            name=m["name"],
            team=m["team"],
            description=m["description"],
            env_vars=m["env_vars"] or [],
            files=m["files"] or [],
            resource_version=m["resource_version"],
            created_at=m["created_at"],
            created_by=m["created_by"],
            updated_at=m["updated_at"],
            traffic=_load_route(m["traffic"], m["resource_version"]),
            latest_revision=revision_id(m["name"], counter) if counter else None,
            latest_revision_at=m.get("latest_revision_at"),
            status=ServiceStatus.model_validate(m["status"], context=_TRUSTED)
            if m["status"]
            else ServiceStatus(),
        )

    def list_services(self, team: str | None = None) -> list[Service]:
        query = select(t.services, _LATEST_REVISION_AT).order_by(t.services.c.name)
        if team is not None:
            query = query.where(t.services.c.team == team)
        with self.read() as conn:
            return [self._to_service(row) for row in conn.execute(query)]

    def service_names(self) -> list[str]:
        with self.read() as conn:
            return list(conn.scalars(select(t.services.c.name).order_by(t.services.c.name)))

    def get_service(self, name: str) -> Service:
        with self.read() as conn:
            row = self._service_row(conn, name)
            at = conn.execute(
                select(_LATEST_REVISION_AT).select_from(t.services).where(t.services.c.name == name)
            ).scalar()
        return self._to_service(row).model_copy(update={"latest_revision_at": at})

    def create_service(self, spec: ServiceSpec, *, actor: str) -> Service:
        now = self.clock()
        try:
            with self.write() as conn:
                self._refuse_name_of_a_tag_host(conn, spec.name)
                conn.execute(
                    insert(t.services).values(
                        name=spec.name,
                        team=spec.team,
                        description=spec.description,
                        env_vars=_dump_env(spec.env_vars),
                        files=[f.model_dump(mode="json") for f in spec.files],
                        resource_version=1,
                        revision_counter=0,
                        created_at=now,
                        created_by=actor,
                        updated_at=now,
                    )
                )
                after = spec.model_dump(mode="json", exclude={"resource_version"})
                self._record(
                    conn,
                    spec.name,
                    actor,
                    "service.created",
                    f"service created for team {spec.team}",
                    None,
                    after,
                )
                return self._to_service(self._service_row(conn, spec.name))
        except IntegrityError:
            raise ConflictError(
                f"service {spec.name!r} already exists", details={"service": spec.name}
            ) from None

    # ---- hostnames belong to their service's team: {tag}-{service} never names a service

    @staticmethod
    def _tag_at(
        conn: Connection, host: str, skip: str | None = None
    ) -> tuple[str, str, str] | None:
        """(tag, service, team) when ``host`` is the address ``{tag}-{service}`` of a tag an
        existing service has (in its traffic or the route a rollback returns to); ``skip``:
        a service not to count (the one asking)."""
        for i, char in enumerate(host):
            if char != "-" or host[i + 1 :] == skip:
                continue
            tag, owner = host[:i], host[i + 1 :]
            row = conn.execute(
                select(
                    t.services.c.team, t.services.c.traffic, t.services.c.previous_traffic
                ).where(t.services.c.name == owner)
            ).first()
            if row is not None and tag in _tags(row.traffic) | _tags(row.previous_traffic):
                return tag, owner, row.team
        return None

    def _refuse_name_of_a_tag_host(self, conn: Connection, name: str) -> None:
        """A new service may not be named like another service's tag address: with tag
        ``canary`` on service ``victim``, a service ``canary-victim`` would take its host."""
        found = self._tag_at(conn, name)
        if found is not None:
            tag, owner, team = found
            raise ConflictError(
                f"service name {name!r} is the address of tag {tag!r} of service {owner!r} "
                f"(team {team}): {name}.<domain> already routes there; pick another name",
                details={"service": name, "taken_by": owner, "tag": tag},
            )

    def _refuse_tags_naming_a_service(
        self, conn: Connection, name: str, routes: list[TrafficRoute | None]
    ) -> None:
        """A tag may not give this service the address of an existing service."""
        tags = set().union(*(_route_tags(r) for r in routes))
        for tag in sorted(tags):
            host = f"{tag}-{name}"
            row = conn.execute(select(t.services.c.team).where(t.services.c.name == host)).first()
            if row is not None:
                raise ConflictError(
                    f"tag {tag!r} would give service {name!r} the address {host}, which is "
                    f"service {host!r} (team {row.team}); pick another tag",
                    details={"service": name, "tag": tag, "taken_by": host},
                )
            # nor the address of another service's tag: tag "v2-shop" of service "api" and
            # tag "v2" of service "shop-api" are both v2-shop-api
            found = self._tag_at(conn, host, skip=name)
            if found is not None:
                other_tag, owner, team = found
                raise ConflictError(
                    f"tag {tag!r} would give service {name!r} the address {host}, which is "
                    f"the address of tag {other_tag!r} of service {owner!r} (team {team}); "
                    "pick another tag",
                    details={"service": name, "tag": tag, "taken_by": owner},
                )

    def _locked(
        self, conn: Connection, name: str, expected_version: int | None, check: Check | None
    ) -> tuple[Row[Any], int]:
        """Lock the service row, let ``check`` veto (authorization), and pick the version the
        write is conditional on: the caller's, or the one just read under the lock."""
        row = self._service_row(conn, name, lock=True)
        if check is not None:
            check(self._to_service(row))
        return row, row.resource_version if expected_version is None else expected_version

    def _swap(
        self, conn: Connection, name: str, expected_version: int, values: dict[str, Any]
    ) -> None:
        """The compare-and-swap every service write goes through."""
        result = conn.execute(
            update(t.services)
            .where(t.services.c.name == name, t.services.c.resource_version == expected_version)
            .values(
                resource_version=t.services.c.resource_version + 1,
                updated_at=self.clock(),
                **values,
            )
        )
        if result.rowcount == 1:
            return
        current = conn.execute(
            select(t.services.c.resource_version).where(t.services.c.name == name)
        ).scalar()
        if current is None:
            raise NotFoundError(f"service {name!r} does not exist (it was deleted meanwhile)")
        raise StaleWriteError(
            f"someone else changed service {name!r} meanwhile (it is at resource_version "
            f"{current}, the write was based on {expected_version}); re-read it and retry",
            details={"service": name, "resource_version": current},
        )

    def update_service(
        self,
        spec: ServiceSpec,
        *,
        expected_version: int | None,
        actor: str,
        check: Check | None = None,
    ) -> tuple[Service, bool]:
        """Apply ``spec`` to an existing service; returns (service, changed)."""
        with self.write() as conn:
            row, expected_version = self._locked(conn, spec.name, expected_version, check)
            before: dict[str, Any] = {
                "team": row.team,
                "description": row.description,
                "env_vars": row.env_vars or [],
                "files": row.files or [],
            }
            after: dict[str, Any] = {
                "team": spec.team,
                "description": spec.description,
                "env_vars": _dump_env(spec.env_vars),
                "files": [f.model_dump(mode="json") for f in spec.files],
            }
            if row.resource_version != expected_version:
                self._swap(conn, spec.name, expected_version, {})  # raises the conflict
            if before == after:
                return self._to_service(row), False
            self._swap(conn, spec.name, expected_version, after)
            changed = ", ".join(
                _env_change(before, after)
                if key == "env_vars"
                else f"files {', '.join(f['path'] for f in after['files']) or 'none'}"
                if key == "files"
                else f"{key} {after[key]!r}"
                for key in after
                if after[key] != before[key]
            )
            self._record(
                conn, spec.name, actor, "service.updated", f"changed {changed}", before, after
            )
            return self._to_service(self._service_row(conn, spec.name)), True

    def delete_service(
        self,
        name: str,
        *,
        expected_version: int | None,
        actor: str,
        check: Check | None = None,
    ) -> None:
        with self.write() as conn:
            row, expected_version = self._locked(conn, name, expected_version, check)
            self._swap(conn, name, expected_version, {})
            conn.execute(delete(t.revisions).where(t.revisions.c.service == name))
            conn.execute(delete(t.services).where(t.services.c.name == name))
            self._record(
                conn,
                name,
                actor,
                "service.deleted",
                f"service deleted with its {row.revision_counter} revision(s)",
                {"team": row.team, "description": row.description},
                None,
            )

    # ------------------------------------------------------------------ revisions

    @staticmethod
    def _to_revision(row: Row[Any]) -> Revision:
        m = row._mapping
        status = (
            RevisionStatus.model_validate(m["status"], context=_TRUSTED)
            if m["status"]
            else RevisionStatus()
        )
        return Revision.model_validate(
            {
                **m["spec"],
                "id": m["id"],
                "service": m["service"],
                "number": m["number"],
                "created_at": m["created_at"],
                "created_by": m["created_by"],
                "status": status,
            },
            context=_TRUSTED,
        )

    def create_revision(
        self,
        name: str,
        spec: RevisionSpec,
        *,
        expected_version: int | None,
        actor: str,
        check: Check | None = None,
    ) -> Revision:
        """Create the next revision of ``name``; the first one also gets 100% of traffic, and so
        does one created while every revision that has traffic has failed."""
        with self.write() as conn:
            row, expected_version = self._locked(conn, name, expected_version, check)
            number = row.revision_counter + 1
            if number > 99999:
                raise ConflictError(f"service {name!r} has reached 99999 revisions")
            rev_id = revision_id(name, number)
            values: dict[str, Any] = {"revision_counter": number}
            first_route = None
            why = "the first revision gets all traffic"
            if row.traffic is None:
                first_route = TrafficRoute.model_validate(
                    {"routes": [{"revision": rev_id, "percent": 100}]}
                )
                values["traffic"] = _dump_route(first_route)
            elif self._every_routed_revision_failed(conn, name, row.traffic):
                # every request fails now: the new revision (a fix, most likely) gets them all,
                # the tags stay, and a rollback goes back to the failed split
                current = _load_route(row.traffic, None)
                tags = [r for r in current.routes if r.tag and r.percent == 0] if current else []
                first_route = TrafficRoute(routes=[Route(revision=rev_id, percent=100), *tags])
                values["traffic"] = _dump_route(first_route)
                values["previous_traffic"] = row.traffic
                why = "every revision that had traffic failed"
            self._swap(conn, name, expected_version, values)
            spec_json = spec.spec().model_dump(mode="json")
            conn.execute(
                insert(t.revisions).values(
                    id=rev_id,
                    service=name,
                    number=number,
                    spec=spec_json,
                    status=None,
                    created_at=self.clock(),
                    created_by=actor,
                )
            )
            artifact = spec.artifact
            self._record(
                conn,
                name,
                actor,
                "revision.created",
                f"revision {number:05d} created from artifact {artifact.name} {artifact.version}",
                None,
                {"revision": rev_id, **spec_json},
            )
            if first_route is not None:
                self._record(
                    conn,
                    name,
                    actor,
                    "traffic.changed",
                    f"traffic {route_summary(first_route)} ({why})",
                    None,
                    _dump_route(first_route),
                )
            created = conn.execute(select(t.revisions).where(t.revisions.c.id == rev_id)).one()
            return self._to_revision(created)

    @staticmethod
    def _every_routed_revision_failed(conn: Connection, name: str, traffic: Any) -> bool:
        route = _load_route(traffic, None)
        routed = {r.revision for r in route.routes if r.percent > 0} if route else set()
        if not routed:
            return False
        rows = conn.execute(
            select(t.revisions.c.id, t.revisions.c.status).where(
                (t.revisions.c.service == name) & t.revisions.c.id.in_(routed)
            )
        ).all()
        return len(rows) == len(routed) and all(
            isinstance(row.status, dict) and row.status.get("failed") for row in rows
        )

    def list_revisions(self, name: str) -> list[Revision]:
        with self.read() as conn:
            self._service_row(conn, name)
            rows = conn.execute(
                select(t.revisions)
                .where(t.revisions.c.service == name)
                .order_by(t.revisions.c.number)
            )
            return [self._to_revision(row) for row in rows]

    def get_revision(self, name: str, rev_id: str) -> Revision:
        with self.read() as conn:
            self._service_row(conn, name)
            row = conn.execute(
                select(t.revisions).where(t.revisions.c.service == name, t.revisions.c.id == rev_id)
            ).first()
            if row is None:
                raise NotFoundError(
                    f"service {name!r} has no revision {rev_id!r}: list them with "
                    f"`sos revisions {name}`",
                    details={"service": name, "revision": rev_id},
                )
            return self._to_revision(row)

    def existing_revisions(self, name: str, ids: set[str]) -> set[str]:
        with self.read() as conn:
            return set(
                conn.scalars(
                    select(t.revisions.c.id).where(
                        t.revisions.c.service == name, t.revisions.c.id.in_(sorted(ids))
                    )
                )
            )

    # ------------------------------------------------------------------ traffic

    def set_traffic(
        self,
        name: str,
        route: TrafficRoute,
        *,
        expected_version: int | None,
        actor: str,
        check: Check | None = None,
    ) -> Service:
        """Replace the traffic route; the old one becomes what a rollback returns to."""
        with self.write() as conn:
            row, expected_version = self._locked(conn, name, expected_version, check)
            self._refuse_tags_naming_a_service(conn, name, [route])
            before = _load_route(row.traffic, None)
            new = _dump_route(route)
            self._swap(
                conn, name, expected_version, {"traffic": new, "previous_traffic": row.traffic}
            )
            self._record(
                conn,
                name,
                actor,
                "traffic.changed",
                f"traffic {route_summary(route)} (was {route_summary(before)})",
                row.traffic,
                new,
            )
            return self._to_service(self._service_row(conn, name))

    def rollback(
        self,
        name: str,
        *,
        expected_version: int | None,
        actor: str,
        check: Check | None = None,
    ) -> Service:
        """Swap the current and the previous route in one step (twice goes forward again)."""
        with self.write() as conn:
            row, expected_version = self._locked(conn, name, expected_version, check)
            if not row.previous_traffic:
                raise ConflictError(
                    f"service {name!r} has no earlier traffic route to roll back to; "
                    f"set one with `sos traffic {name} REVISION=PERCENT ...`",
                    details={"service": name},
                )
            self._refuse_tags_naming_a_service(
                conn, name, [_load_route(row.previous_traffic, None)]
            )
            self._swap(
                conn,
                name,
                expected_version,
                {"traffic": row.previous_traffic, "previous_traffic": row.traffic},
            )
            self._record(
                conn,
                name,
                actor,
                "traffic.rollback",
                f"rolled back to traffic {route_summary(_load_route(row.previous_traffic, None))}"
                f" (was {route_summary(_load_route(row.traffic, None))})",
                row.traffic,
                row.previous_traffic,
            )
            return self._to_service(self._service_row(conn, name))

    # ------------------------------------------------------------------ status

    def write_status(
        self,
        name: str,
        status: ServiceStatus,
        revision_status: Mapping[str, RevisionStatus],
    ) -> bool:
        """Record observed state. Does not bump resource_version (status is not spec).

        Returns False when the service no longer exists."""
        with self.write() as conn:
            result = conn.execute(
                update(t.services)
                .where(t.services.c.name == name)
                .values(status=status.model_dump(mode="json"))
            )
            if result.rowcount == 0:
                return False
            for rev_id, rev_status in revision_status.items():
                conn.execute(
                    update(t.revisions)
                    .where(t.revisions.c.service == name, t.revisions.c.id == rev_id)
                    .values(status=rev_status.model_dump(mode="json"))
                )
            return True

    def desired(self, name: str) -> DesiredService | None:
        """The desired state of one service as the reconciler hands it to a backend."""
        with self.read() as conn:
            row = conn.execute(select(t.services).where(t.services.c.name == name)).first()
            if row is None:
                return None
            service = self._to_service(row)
            revs = conn.execute(
                select(t.revisions)
                .where(t.revisions.c.service == name)
                .order_by(t.revisions.c.number)
            )
            return DesiredService(
                service=service,
                revisions=tuple(self._to_revision(r) for r in revs),
                traffic=service.traffic,
            )

    # ------------------------------------------------------------------ history

    def history(
        self, name: str, *, limit: int = 100, before: int | None = None
    ) -> list[HistoryEntry]:
        """Newest first. ``before`` pages back: pass the smallest id of the previous page."""
        query = (
            select(t.history)
            .where(t.history.c.service == name)
            .order_by(t.history.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(t.history.c.id < before)
        with self.read() as conn:
            rows = list(conn.execute(query))
            if not rows and before is None:
                exists = conn.execute(
                    select(func.count()).select_from(t.services).where(t.services.c.name == name)
                ).scalar()
                if not exists:
                    raise NotFoundError(f"service {name!r} has no history: it never existed")
            return [HistoryEntry.model_validate(dict(row._mapping)) for row in rows]

    # ------------------------------------------------------------------ tokens

    @staticmethod
    def _to_token(row: Row[Any]) -> Token:
        m = row._mapping
        return Token(
            id=m["id"],
            name=m["name"],
            role=m["role"],
            team=m["team"],
            created_at=m["created_at"],
            created_by=m["created_by"],
            expires_at=m["expires_at"],
            last_used_at=m["last_used_at"],
        )

    def create_token(
        self, spec: TokenSpec, *, actor: str | None, secret: str | None = None
    ) -> TokenCreated:
        """Store a new token (hashed) and return it with its secret, the only time it is shown."""
        secret = secret or "sos_" + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(6)
        now = self.clock()
        try:
            with self.write() as conn:
                conn.execute(
                    insert(t.tokens).values(
                        id=token_id,
                        name=spec.name,
                        role=spec.role,
                        team=spec.team,
                        secret_hash=hash_secret(secret),
                        created_at=now,
                        created_by=actor,
                        expires_at=now + timedelta(seconds=spec.expires_in_seconds)
                        if spec.expires_in_seconds
                        else None,
                    )
                )
                row = conn.execute(select(t.tokens).where(t.tokens.c.id == token_id)).one()
        except IntegrityError:
            raise ConflictError(
                f"a token named {spec.name!r} already exists: pick another name or revoke it "
                f"first with `sos token revoke {spec.name}`",
                details={"name": spec.name},
            ) from None
        return TokenCreated(**self._to_token(row).model_dump(), secret=secret)

    def token_for_secret(self, secret: str) -> Token | None:
        with self.read() as conn:
            row = conn.execute(
                select(t.tokens).where(t.tokens.c.secret_hash == hash_secret(secret))
            ).first()
            return self._to_token(row) if row else None

    def token_used(self, token: Token) -> None:
        """Record that ``token`` authenticated a request, at most once a minute (a write per
        request would cost every read a transaction)."""
        now = self.clock()
        if token.last_used_at is not None and now - token.last_used_at < LAST_USED_GRANULARITY:
            return
        with self.write() as conn:
            conn.execute(update(t.tokens).where(t.tokens.c.id == token.id).values(last_used_at=now))

    def list_tokens(self) -> list[Token]:
        with self.read() as conn:
            return [
                self._to_token(row)
                for row in conn.execute(select(t.tokens).order_by(t.tokens.c.created_at))
            ]

    def count_tokens(self, role: Role | None = None) -> int:
        query = select(func.count()).select_from(t.tokens)
        if role is not None:
            query = query.where(t.tokens.c.role == role)
        with self.read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def delete_token(self, ref: str) -> Token:
        """Revoke a token by id or name; refuses to revoke the last admin token."""
        with self.write() as conn:
            row = conn.execute(
                select(t.tokens).where((t.tokens.c.id == ref) | (t.tokens.c.name == ref))
            ).first()
            if row is None:
                raise NotFoundError(
                    f"no token with id or name {ref!r}: list them with `sos token list`"
                )
            if row.role == "admin":
                admins = conn.execute(
                    select(func.count()).select_from(t.tokens).where(t.tokens.c.role == "admin")
                ).scalar()
                if admins == 1:
                    raise ValidationError(
                        f"token {row.name!r} is the last admin token; create another admin "
                        "token first, or nobody could manage tokens any more"
                    )
            conn.execute(delete(t.tokens).where(t.tokens.c.id == row.id))
            return self._to_token(row)
