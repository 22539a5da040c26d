"""Create the beat tables: hutch_schedules, hutch_schedule_runs, hutch_beat_lease.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)
NOW = sa.text("CURRENT_TIMESTAMP")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "hutch_schedules",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("task", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=True),
        sa.Column("crontab", sa.String(255), nullable=True),
        sa.Column("clocked_at", WHEN, nullable=True),
        sa.Column("args", _json(), nullable=True),
        sa.Column("kwargs", _json(), nullable=True),
        sa.Column("options", _json(), nullable=True),
        sa.Column("timezone", sa.String(64), server_default=sa.text("'UTC'"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("one_off", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("start_at", WHEN, nullable=True),
        sa.Column("end_at", WHEN, nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("source", sa.String(16), server_default=sa.text("'runtime'"), nullable=False),
        sa.Column("last_run_at", WHEN, nullable=True),
        sa.Column("total_run_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_run_at", WHEN, nullable=True),
        sa.Column("created_at", WHEN, server_default=NOW, nullable=False),
        sa.Column("updated_at", WHEN, server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_hutch_schedules"),
    )
    op.create_index("ix_hutch_schedules_next_run_at", "hutch_schedules", ["next_run_at"])
    op.create_table(
        "hutch_schedule_runs",
        sa.Column("schedule_name", sa.String(200), nullable=False),
        sa.Column("due_at", WHEN, nullable=False),
        sa.Column("task_id", sa.String(155), nullable=False),
        sa.Column("claimed_at", WHEN, nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("sent_at", WHEN, nullable=True),
        sa.Column("manual", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("schedule_name", "due_at", name="pk_hutch_schedule_runs"),
        sa.UniqueConstraint("task_id", name="uq_hutch_schedule_runs_task_id"),
    )
    op.create_index("ix_hutch_schedule_runs_sent_at", "hutch_schedule_runs", ["sent_at"])
    op.create_index("ix_hutch_schedule_runs_claimed_at", "hutch_schedule_runs", ["claimed_at"])
    op.create_table(
        "hutch_beat_lease",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("acquired_at", WHEN, nullable=False),
        sa.Column("renewed_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_hutch_beat_lease"),
    )


def downgrade() -> None:
    op.drop_table("hutch_beat_lease")
    op.drop_table("hutch_schedule_runs")
    op.drop_table("hutch_schedules")
