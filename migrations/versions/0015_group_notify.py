"""The key of the client that sent a chord: hutch_groups.notify.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

A chord's body is sent by the worker that counts its last header task, not by the
client that waits for it. ``notify`` (nullable, at most 200 characters of
``[A-Za-z0-9_.-]``) keeps the sending client's notice key (the ``notify`` message
header, docs/protocol.md) with the chord, so the body's message names that client
and its completion notice reaches it alone (docs/topology.md, "Completion notices").
NULL for plain groups, for chords sent by releases before this one and for chords
sent by no client. Adding a nullable column without a default rewrites no row.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hutch_groups", sa.Column("notify", sa.String(200), nullable=True))


def downgrade() -> None:
    # batch mode: SQLite rebuilds the table; PostgreSQL gets plain ALTER TABLE DROP COLUMN
    with op.batch_alter_table("hutch_groups") as batch:
        batch.drop_column("notify")
