"""Create hutch_task_attempts: the attempts of a task that failed and were retried.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

``hutch_tasks`` keeps one row per task with the times of its latest attempt only;
each RETRY a worker records also inserts one row here (in the same transaction), so
the dashboard can show every attempt. The key ``(task_id, attempt)`` makes a
redelivered RETRY write nothing twice. Columns are explained in docs/dba.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID_LENGTH = 155  # hutch.envelope.ID_LENGTH when this revision was written


def upgrade() -> None:
    op.create_table(
        "hutch_task_attempts",
        sa.Column("task_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retried_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("eta", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exception_type", sa.String(255), nullable=True),
        sa.Column("exception_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", "attempt", name="pk_hutch_task_attempts"),
    )


def downgrade() -> None:
    op.drop_table("hutch_task_attempts")
