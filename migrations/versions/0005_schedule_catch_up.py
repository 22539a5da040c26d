"""Per-schedule catch-up: hutch_schedules.catch_up and catch_up_limit.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10

Existing rows get the defaults (``one``, 100): they behave as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hutch_schedules", sa.Column(
        "catch_up", sa.String(8), server_default=sa.text("'one'"), nullable=False))
    op.add_column("hutch_schedules", sa.Column(
        "catch_up_limit", sa.Integer(), server_default=sa.text("100"), nullable=False))


def downgrade() -> None:
    # batch mode: SQLite rebuilds the table; PostgreSQL gets plain ALTER TABLE DROP COLUMN
    with op.batch_alter_table("hutch_schedules") as batch:
        batch.drop_column("catch_up_limit")
        batch.drop_column("catch_up")
