"""Create hutch_revoked: the task ids every worker must refuse to run.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "hutch_revoked",
        sa.Column("task_id", sa.String(155), nullable=False),
        sa.Column("revoked_at", WHEN, server_default=sa.text("CURRENT_TIMESTAMP"),
                  nullable=False),
        sa.Column("honour_until", WHEN, nullable=False),
        sa.Column("terminate", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("signal", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name="pk_hutch_revoked"),
    )
    op.create_index("ix_hutch_revoked_honour_until", "hutch_revoked", ["honour_until"])


def downgrade() -> None:
    op.drop_table("hutch_revoked")
