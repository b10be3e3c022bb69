"""Artifact metadata in SQL: which digest a name+version names, who pushed it, when.

The bytes live in an ``ArtifactStore`` (``sos.artifacts``); this table is the catalog on
top of it. ``add`` applies the immutability rule (``sos.artifacts.check_immutable``) inside
the write transaction, so two pushes of one version race safely: the first wins, the second
is a no-op (same bytes) or a 409 (other bytes).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.exc import IntegrityError

from sos.artifacts.catalog import check_immutable
from sos.models import ArtifactMetadata
from sos.store import tables as t
from sos.store.store import Store

__all__ = ["ArtifactTable"]


def _to_metadata(row: Row[Any]) -> ArtifactMetadata:
    meta = ArtifactMetadata.model_validate(row.meta)
    return meta.model_copy(update={"pushed_by": row.pushed_by, "pushed_at": row.pushed_at})


class ArtifactTable:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, name: str, version: str) -> ArtifactMetadata | None:
        with self.store.read() as conn:
            row = conn.execute(
                select(t.artifacts).where(
                    t.artifacts.c.name == name, t.artifacts.c.version == version
                )
            ).first()
        return _to_metadata(row) if row is not None else None

    def by_digest(self, digest: str) -> ArtifactMetadata | None:
        """One artifact holding ``digest`` (the oldest, when several versions share it)."""
        with self.store.read() as conn:
            row = conn.execute(
                select(t.artifacts)
                .where(t.artifacts.c.digest == digest)
                .order_by(t.artifacts.c.pushed_at)
                .limit(1)
            ).first()
        return _to_metadata(row) if row is not None else None

    def list(self, name: str | None = None) -> list[ArtifactMetadata]:
        query = select(t.artifacts).order_by(t.artifacts.c.name, t.artifacts.c.pushed_at)
        if name is not None:
            query = query.where(t.artifacts.c.name == name)
        with self.store.read() as conn:
            return [_to_metadata(row) for row in conn.execute(query)]

    def owner(self, name: str) -> tuple[bool, str | None]:
        """Whether ``name`` has any version yet, and the team that owns it (None: shared)."""
        with self.store.read() as conn:
            row = conn.execute(
                select(t.artifacts.c.team)
                .where(t.artifacts.c.name == name)
                .order_by(t.artifacts.c.pushed_at)
                .limit(1)
            ).first()
        return (row is not None, row.team if row is not None else None)

    def digest_in_use(self, digest: str) -> bool:
        return self.by_digest(digest) is not None

    def add(
        self, meta: ArtifactMetadata, *, pushed_by: str, team: str | None
    ) -> tuple[ArtifactMetadata, bool]:
        """Record ``meta``; returns what is recorded and whether it is new. Raises
        ``ConflictError`` when the version already names other bytes."""
        for _ in range(3):
            existing = self.get(meta.name, meta.version)
            if check_immutable(existing, meta.digest):
                assert existing is not None
                return existing, False
            now = self.store.clock()
            document = meta.model_dump(mode="json", exclude={"pushed_by", "pushed_at"})
            try:
                with self.store.write() as conn:
                    conn.execute(
                        insert(t.artifacts).values(
                            name=meta.name,
                            version=meta.version,
                            digest=meta.digest,
                            language=meta.language,
                            size=meta.size,
                            meta=document,
                            team=team,
                            pushed_by=pushed_by,
                            pushed_at=now,
                        )
                    )
            except IntegrityError:
                continue  # another push of this version won the race: check it again
            return meta.model_copy(update={"pushed_by": pushed_by, "pushed_at": now}), True
        raise RuntimeError(f"could not record {meta.name} {meta.version}")  # pragma: no cover
