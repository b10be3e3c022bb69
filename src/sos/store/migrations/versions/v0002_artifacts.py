"""artifacts: metadata of pushed artifacts by name and version

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sos.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("language", sa.String(20), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("team", sa.String(63), nullable=True),
        sa.Column("pushed_by", sa.String(100), nullable=False),
        sa.Column("pushed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_artifacts"),
    )
    op.create_index("ix_artifacts_digest", "artifacts", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_artifacts_digest", table_name="artifacts")
    op.drop_table("artifacts")
