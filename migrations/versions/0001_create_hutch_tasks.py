"""Create hutch_tasks: one row per task id with its state, result and timings.

Revision ID: 0001
Revises:
Create Date: 2024-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from hutch.results.models: a revision must
# keep creating exactly this schema even after the models move on.
ID = sa.String(155)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)
NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "hutch_tasks",
        sa.Column("task_id", ID, nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("args", JSON, nullable=True),
        sa.Column("kwargs", JSON, nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("result_encoded", sa.LargeBinary(), nullable=True),
        sa.Column("result_content_type", sa.String(128), nullable=True),
        sa.Column("exception_type", sa.String(255), nullable=True),
        sa.Column("exception_message", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("queue", sa.String(255), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("retries", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("root_id", ID, nullable=True),
        sa.Column("group_id", ID, nullable=True),
        sa.Column("eta", WHEN, nullable=True),
        sa.Column("expires", WHEN, nullable=True),
        sa.Column("schedule_name", sa.String(255), nullable=True),
        sa.Column("created_at", WHEN, server_default=NOW, nullable=False),
        sa.Column("received_at", WHEN, nullable=True),
        sa.Column("started_at", WHEN, nullable=True),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("updated_at", WHEN, server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_hutch_tasks"),
    )
    op.create_index("ix_hutch_tasks_state", "hutch_tasks", ["state"])
    op.create_index("ix_hutch_tasks_name", "hutch_tasks", ["name"])
    op.create_index("ix_hutch_tasks_finished_at", "hutch_tasks", ["finished_at"])
    op.create_index("ix_hutch_tasks_parent_id", "hutch_tasks", ["parent_id"])
    op.create_index("ix_hutch_tasks_root_id", "hutch_tasks", ["root_id"])
    op.create_index("ix_hutch_tasks_group_id", "hutch_tasks", ["group_id"])
    op.create_index("ix_hutch_tasks_schedule_name", "hutch_tasks", ["schedule_name"])


def downgrade() -> None:
    op.drop_table("hutch_tasks")  # its indexes go with it
