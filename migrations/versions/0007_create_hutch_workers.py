"""Create hutch_workers: one row per worker node, kept fresh by its heartbeat.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

A worker upserts its row every ``worker_heartbeat_interval`` seconds (one
statement); readers call a row silent for 3 intervals offline. The beat's cleanup
deletes rows whose last heartbeat is older than ``worker_heartbeat_retention``,
hence the index on ``last_heartbeat_at``. Columns are explained in docs/dba.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "hutch_workers",
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("app", sa.String(255), nullable=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("pool", sa.String(16), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("processes", sa.Integer(), nullable=False),
        sa.Column("queues", JSON, nullable=False),
        sa.Column("prefetch", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("heartbeat_interval", sa.Float(), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("last_heartbeat_at", WHEN, nullable=False),
        _count("processed"),
        _count("succeeded"),
        _count("failed"),
        _count("retried"),
        sa.Column("loadavg_1", sa.Float(), nullable=True),
        sa.Column("loadavg_5", sa.Float(), nullable=True),
        sa.Column("loadavg_15", sa.Float(), nullable=True),
        sa.Column("rss_bytes", sa.BigInteger(), nullable=True),
        sa.Column("python_version", sa.String(32), nullable=True),
        sa.Column("platform", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("hostname", name="pk_hutch_workers"),
    )
    op.create_index("ix_hutch_workers_last_heartbeat_at", "hutch_workers",
                    ["last_heartbeat_at"])


def downgrade() -> None:
    op.drop_table("hutch_workers")
