"""Stamps: hutch_tasks.stamps and hutch_revoked_stamps.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

``hutch_tasks.stamps`` (nullable JSON, ``jsonb`` on PostgreSQL) keeps the stamps a
task's message carried (``Signature.stamp``), NULL for a task without any: adding a
nullable column without a default rewrites no row. ``hutch_revoked_stamps`` keeps
``app.control.revoke_by_stamped_headers``, as ``hutch_revoked`` keeps revoked ids: one
row per stamp name and value (the value as canonical JSON text). No index on
``stamps``: docs/dba.md shows the partial GIN index to build when queries need one.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)
JSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.add_column("hutch_tasks", sa.Column("stamps", JSON, nullable=True))
    op.create_table(
        "hutch_revoked_stamps",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("revoked_at", WHEN, server_default=sa.text("CURRENT_TIMESTAMP"),
                  nullable=False),
        sa.Column("honour_until", WHEN, nullable=False),
        sa.Column("terminate", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("signal", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("name", "value", name="pk_hutch_revoked_stamps"),
    )
    op.create_index("ix_hutch_revoked_stamps_honour_until", "hutch_revoked_stamps",
                    ["honour_until"])


def downgrade() -> None:
    op.drop_table("hutch_revoked_stamps")
    with op.batch_alter_table("hutch_tasks") as batch:
        batch.drop_column("stamps")
