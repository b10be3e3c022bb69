"""Rollouts in SQL: one row per service (its newest rollout), written by the server that
drives it. Every write is a compare-and-swap on ``version``, so two servers sharing one
database never both move the same rollout, and a stop always wins over a step in flight.
"""

from __future__ import annotations

from typing import Any, NoReturn

from sqlalchemy import Row, insert, select, update

from sos.errors import ConflictError
from sos.models import RolloutStatus
from sos.store import tables as t
from sos.store.store import Store

__all__ = ["RolloutTable", "StoredRollout"]

_TRUSTED = {"sos_trusted_source": True}


class StoredRollout:
    """A rollout as stored, with the version a conditional write names."""

    def __init__(self, status: RolloutStatus, version: int) -> None:
        self.status = status
        self.version = version


def _load(row: Row[Any]) -> StoredRollout:
    return StoredRollout(RolloutStatus.model_validate(row.status, context=_TRUSTED), row.version)


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
