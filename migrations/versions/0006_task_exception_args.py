"""hutch_tasks.exception_args: the failed attempt's exception arguments as JSON.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-14

``get()`` rebuilds a task's exception from these (``ValueError('a', 'b')``, not
``ValueError("('a', 'b')")``). Existing rows get NULL: their exceptions are rebuilt
from ``exception_message``, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hutch_tasks", sa.Column(
        "exception_args", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=True))


def downgrade() -> None:
    # batch mode: SQLite rebuilds the table; PostgreSQL gets plain ALTER TABLE DROP COLUMN
    with op.batch_alter_table("hutch_tasks") as batch:
        batch.drop_column("exception_args")
