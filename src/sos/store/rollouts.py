"""Rollouts in SQL: one row per service (its newest rollout), written by the server that
drives it. Every write is a compare-and-swap on ``version``, so two servers sharing one
database never both move the same rollout, and a stop always wins over a step in flight.

A running rollout has one driver, a server instance, with a lease (``driver``,
``lease_until``): the driver renews it (one small UPDATE, ``renew``), another server takes
the rollout over only once the lease has run out (``claim``, a compare-and-swap that one
server wins), and a driver that shuts down lets its leases go (``release``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import Row, insert, or_, select, update

from sos.errors import ConflictError
from sos.models import RolloutStatus
from sos.store import tables as t
from sos.store.store import Store

__all__ = ["RolloutTable", "StoredRollout"]

_TRUSTED = {"sos_trusted_source": True}


class StoredRollout:
    """A rollout as stored, with the version a conditional write names and who drives it
    until when (None: no server has taken it yet, or its driver let it go)."""

    def __init__(
        self,
        status: RolloutStatus,
        version: int,
        *,
        driver: str | None = None,
        lease_until: datetime | None = None,
    ) -> None:
        self.status = status
        self.version = version
        self.driver = driver
        self.lease_until = lease_until


def _load(row: Row[Any]) -> StoredRollout:
    return StoredRollout(
        RolloutStatus.model_validate(row.status, context=_TRUSTED),
        row.version,
        driver=row.driver,
        lease_until=row.lease_until,
    )


class RolloutTable:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, service: str) -> StoredRollout | None:
        with self.store.read() as conn:
            row = conn.execute(select(t.rollouts).where(t.rollouts.c.service == service)).first()
        return _load(row) if row is not None else None

    def running(self) -> list[StoredRollout]:
        with self.store.read() as conn:
            rows = conn.execute(
                select(t.rollouts)
                .where(t.rollouts.c.state == "running")
                .order_by(t.rollouts.c.service)
            ).all()
        return [_load(row) for row in rows]

    @staticmethod
    def refuse_running(service: str) -> NoReturn:
        raise ConflictError(
            f"service {service!r} has a rollout running already: see it with "
            f"`sos rollout {service} --status`, stop it with `sos rollout {service} --stop`",
            details={"service": service},
        )

    def start(self, status: RolloutStatus, *, actor: str, summary: str) -> StoredRollout:
        """Store a new rollout of ``status.service``; refused while one is running."""
        doc = status.model_dump(mode="json")
        with self.store.write() as conn:
            row = conn.execute(
                select(t.rollouts).where(t.rollouts.c.service == status.service)
            ).first()
            if row is not None and row.state == "running":
                self.refuse_running(status.service)
            version = (row.version if row is not None else 0) + 1
            values = {
                "state": status.state,
                "version": version,
                "status": doc,
                "updated_at": status.updated_at,
                "driver": None,  # the first server's driver to look takes it
                "lease_until": None,
            }
            if row is None:
                conn.execute(insert(t.rollouts).values(service=status.service, **values))
            else:
                conn.execute(
                    update(t.rollouts).where(t.rollouts.c.service == status.service).values(values)
                )
            self.store._record(conn, status.service, actor, "rollout.started", summary, None, doc)
        return StoredRollout(status, version)

    def move(
        self,
        status: RolloutStatus,
        *,
        expected_version: int,
        actor: str,
        record: tuple[str, str] | None = None,
    ) -> StoredRollout | None:
        """Write ``status`` if the stored rollout is still at ``expected_version`` (else
        None: someone else moved it); ``record``: (action, summary) for the history."""
        doc = status.model_dump(mode="json")
        with self.store.write() as conn:
            result = conn.execute(
                update(t.rollouts)
                .where(
                    t.rollouts.c.service == status.service,
                    t.rollouts.c.version == expected_version,
                )
                .values(
                    state=status.state,
                    version=expected_version + 1,
                    status=doc,
                    updated_at=status.updated_at,
                )
            )
            if result.rowcount != 1:
                return None
            if record is not None:
                action, summary = record
                self.store._record(conn, status.service, actor, action, summary, None, doc)
        return StoredRollout(status, expected_version + 1)

    def claim(
        self,
        stored: StoredRollout,
        *,
        driver: str,
        now: datetime,
        until: datetime,
        status: RolloutStatus | None = None,
    ) -> StoredRollout | None:
        """Make ``driver`` the driver of a running rollout until ``until``, if it is still
        at ``stored.version`` and nobody holds a lease on it at ``now`` (else None: another
        server renewed, took or moved it first); with ``status`` (a restarted step) written
        in the same UPDATE. The version is bumped, so a step the former driver still has in
        flight is refused."""
        c = t.rollouts.c
        values: dict[str, Any] = {
            "version": stored.version + 1,
            "driver": driver,
            "lease_until": until,
        }
        if status is not None:
            values |= {"status": status.model_dump(mode="json"), "updated_at": status.updated_at}
        with self.store.write() as conn:
            result = conn.execute(
                update(t.rollouts)
                .where(
                    c.service == stored.status.service,
                    c.version == stored.version,
                    c.state == "running",
                    or_(c.lease_until.is_(None), c.lease_until <= now),
                )
                .values(values)
            )
        if result.rowcount != 1:
            return None
        return StoredRollout(
            status or stored.status, stored.version + 1, driver=driver, lease_until=until
        )

    def renew(self, service: str, *, driver: str, until: datetime) -> bool:
        """Extend ``driver``'s lease on the running rollout of ``service`` to ``until``: one
        UPDATE of that column, the version untouched. False: it is not ``driver``'s any more
        (taken over, or ended)."""
        c = t.rollouts.c
        with self.store.write() as conn:
            result = conn.execute(
                update(t.rollouts)
                .where(c.service == service, c.driver == driver, c.state == "running")
                .values(lease_until=until)
            )
        return bool(result.rowcount == 1)

    def release(self, driver: str) -> None:
        """``driver`` stops: its running rollouts are free to be taken over at once."""
        c = t.rollouts.c
        with self.store.write() as conn:
            conn.execute(
                update(t.rollouts)
                .where(c.driver == driver, c.state == "running")
                .values(lease_until=None)
            )
