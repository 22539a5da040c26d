"""Create hutch_audit: who did what to which target from hutch web, and how it ended.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

Every action of the dashboard and its API (revoke, retry, replay, purge, schedule
edits, worker control) inserts one row after it is tried, success or failure. Rows
are never updated; DBAs prune them by ``at``. Columns are explained in docs/dba.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "hutch_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", JSON, nullable=True),
        sa.Column("client", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_hutch_audit"),
    )
    op.create_index("ix_hutch_audit_at", "hutch_audit", ["at"])
    op.create_index("ix_hutch_audit_target", "hutch_audit", ["target", "at"])


def downgrade() -> None:
    op.drop_table("hutch_audit")
