"""Create hutch_groups and hutch_group_counts: groups, chords and their completion count.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)
ID = sa.String(155)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "hutch_groups",
        sa.Column("group_id", ID, nullable=False),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("root_id", ID, nullable=True),
        sa.Column("member_ids", JSON, nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("body", JSON, nullable=True),
        sa.Column("body_id", ID, nullable=True),
        sa.Column("state", sa.String(16), nullable=True),
        sa.Column("completed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failed_task_id", ID, nullable=True),
        sa.Column("created_at", WHEN, server_default=sa.text("CURRENT_TIMESTAMP"),
                  nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("body_sent_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("group_id", name="pk_hutch_groups"),
    )
    op.create_index("ix_hutch_groups_root_id", "hutch_groups", ["root_id"])
    op.create_index("ix_hutch_groups_parent_id", "hutch_groups", ["parent_id"])
    op.create_index("ix_hutch_groups_body_id", "hutch_groups", ["body_id"])
    op.create_table(
        "hutch_group_counts",
        sa.Column("group_id", ID, nullable=False),
        sa.Column("shard", sa.String(255), nullable=False),
        sa.Column("completed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "shard", name="pk_hutch_group_counts"),
    )


def downgrade() -> None:
    op.drop_table("hutch_group_counts")
    op.drop_table("hutch_groups")
