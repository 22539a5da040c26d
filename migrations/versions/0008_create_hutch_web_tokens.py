"""Create hutch_web_tokens: the bearer tokens of hutch web's API, stored hashed.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

``hutch web token create NAME`` inserts a row with the SHA-256 of a random token
(the token itself is printed once and kept nowhere); each API request looks its
token's hash up through the unique index; ``hutch web token revoke NAME`` deletes
the row. Columns are explained in docs/dba.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hutch_web_tokens",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True),
                  server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_hutch_web_tokens"),
    )
    op.create_index("ux_hutch_web_tokens_token_hash", "hutch_web_tokens", ["token_hash"],
                    unique=True)


def downgrade() -> None:
    op.drop_table("hutch_web_tokens")
