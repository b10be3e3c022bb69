"""Every SQL table of SOS, in one ``MetaData``. Nothing outside ``sos.store`` speaks SQL.

Adding a table: declare it here, then add a migration under ``migrations/versions/`` (see
``docs/sos/extending.md``). Structured values (specs, statuses, traffic routes) are stored as
JSON documents written by the pydantic models; the columns that queries filter or order on
are real columns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect

__all__ = [
    "UTCDateTime",
    "artifacts",
    "history",
    "metadata",
    "revisions",
    "rollouts",
    "secrets",
    "services",
    "tokens",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("SOS stores only timezone-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        result: datetime = value
        return result.replace(tzinfo=UTC) if result.tzinfo is None else result.astimezone(UTC)


services = Table(
    "services",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("team", String(63), nullable=False, index=True),
    Column("description", Text, nullable=False, default=""),
    # environment variables set on the service, merged into each new revision (0005)
    Column("env_vars", JSON, nullable=True),
    # small config files set on the service, merged into each new revision (0006)
    Column("files", JSON, nullable=True),
    # bumped on every change of the service or its traffic: the compare-and-swap token
    Column("resource_version", Integer, nullable=False),
    # the number of the last revision created (the next one gets this + 1)
    Column("revision_counter", Integer, nullable=False, default=0),
    Column("traffic", JSON, nullable=True),
    # the route in force before the last traffic change: what a rollback goes back to
    Column("previous_traffic", JSON, nullable=True),
    Column("status", JSON, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(100), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

revisions = Table(
    "revisions",
    metadata,
    Column("id", String(63), primary_key=True),
    Column(
        "service",
        String(63),
        ForeignKey("services.name", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("number", Integer, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("status", JSON, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(100), nullable=True),
    UniqueConstraint("service", "number", name="uq_revisions_service_number"),
)

history = Table(
    "history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # no foreign key: the history of a deleted service stays readable
    Column("service", String(63), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(40), nullable=False),
    Column("summary", Text, nullable=False),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("team", String(63), nullable=True),
    # sha256 of the secret; the secret itself is never stored
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(100), nullable=True),
    # migration 0004: an optional expiry, and when it was last used (to the minute)
    Column("expires_at", UTCDateTime, nullable=True),
    Column("last_used_at", UTCDateTime, nullable=True),
)

# artifacts pushed to the server (issue 4): metadata by name+version; the bytes are in the
# ArtifactStore under ``digest``. A name+version is immutable.
artifacts = Table(
    "artifacts",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("digest", String(71), nullable=False, index=True),
    Column("language", String(20), nullable=False),
    Column("size", BigInteger, nullable=False),
    # the whole ArtifactMetadata as the pusher sent it (with the server's digest and size)
    Column("meta", JSON, nullable=False),
    # the team of the token that first pushed this name (None: an admin pushed it)
    Column("team", String(63), nullable=True),
    Column("pushed_by", String(100), nullable=False),
    Column("pushed_at", UTCDateTime, nullable=False),
)


# a team's secrets (migration 0003): the value sealed with the server's key (AES-GCM, team and
# name bound in), never in plain text (``sos.store.secrets``)
secrets = Table(
    "secrets",
    metadata,
    Column("team", String(63), primary_key=True),
    Column("name", String(63), primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(100), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("updated_by", String(100), nullable=True),
)

#: one rollout per service, the newest (``sos.store.rollouts``); gone with its service
rollouts = Table(
    "rollouts",
    metadata,
    Column(
        "service",
        String(63),
        ForeignKey("services.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("state", String(20), nullable=False),
    #: bumped by every write of the status and by a take-over (not by a lease renewal):
    #: two servers on one database never both move a rollout
    Column("version", Integer, nullable=False),
    Column("status", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    #: the server driving it while it runs, and until when unless it renews (0008): another
    #: server takes it over only after ``lease_until``
    Column("driver", String(100), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
)
