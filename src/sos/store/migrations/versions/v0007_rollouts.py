"""rollouts: one per service, driven by the server, surviving its restarts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sos.store.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service"],
            ["services.name"],
            name="fk_rollouts_service_services",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("service", name="pk_rollouts"),
    )


def downgrade() -> None:
    op.drop_table("rollouts")
