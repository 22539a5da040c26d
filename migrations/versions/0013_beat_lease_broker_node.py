"""The broker node of the active beat: hutch_beat_lease.broker_node.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

``broker_node`` (nullable ``host:port``, no credentials) is the RabbitMQ node the
lease holder publishes through, written with every renewal, so on a cluster an
operator sees which node the active beat depends on (issue #17). Adding a nullable
column without a default rewrites no row; the one existing row gets it at the next
renewal.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hutch_beat_lease", sa.Column("broker_node", sa.String(255), nullable=True))


def downgrade() -> None:
    # batch mode: SQLite rebuilds the table; PostgreSQL gets plain ALTER TABLE DROP COLUMN
    with op.batch_alter_table("hutch_beat_lease") as batch:
        batch.drop_column("broker_node")
