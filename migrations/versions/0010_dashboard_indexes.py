"""hutch_tasks indexes for the dashboard's task list: fast at 1,000,000 rows.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

Each sort and each common filter of the task list gets a B-tree ending in
``task_id``, the list's tie-breaker, so a page is one index range read whatever its
depth (keyset pagination): ``(created_at, task_id)``, ``(received_at, task_id)``,
``(started_at, task_id)``, ``(finished_at, task_id)`` (replaces 0001's
``(finished_at)``), ``(name, created_at, task_id)`` (replaces ``(name)``; on
PostgreSQL it INCLUDEs ``state``, so the counts of one name read the index alone),
``(state, created_at, task_id)``, ``(queue, created_at, task_id)``,
``(worker, created_at, task_id)``.

On PostgreSQL the text search gets a trigram GIN index over the searched text
(pg_trgm, a trusted extension since PostgreSQL 13: the database's owner may create
it; otherwise a superuser runs ``CREATE EXTENSION pg_trgm`` first). Downgrading drops
the indexes and keeps the extension, which other schemas may use.

Plain ``CREATE INDEX IF NOT EXISTS``: each one blocks writes to ``hutch_tasks``
while it is built (about 45 s for all at 1,000,000 rows); docs/dba.md says how to
build them with ``CONCURRENTLY`` beforehand instead, which this then skips.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "hutch_tasks"
ADDED = {
    "ix_hutch_tasks_created_at": ["created_at", "task_id"],
    "ix_hutch_tasks_received_at": ["received_at", "task_id"],
    "ix_hutch_tasks_started_at": ["started_at", "task_id"],
    "ix_hutch_tasks_finished_at_task_id": ["finished_at", "task_id"],
    "ix_hutch_tasks_state_created_at": ["state", "created_at", "task_id"],
    "ix_hutch_tasks_name_created_at": ["name", "created_at", "task_id"],
    "ix_hutch_tasks_queue": ["queue", "created_at", "task_id"],
    "ix_hutch_tasks_worker": ["worker", "created_at", "task_id"],
}
INCLUDED = {"ix_hutch_tasks_name_created_at": ["state"]}
"""PostgreSQL: the counts by state of one task name are read from the index alone."""
REPLACED = {"ix_hutch_tasks_name": ["name"], "ix_hutch_tasks_finished_at": ["finished_at"]}
"""0001's indexes that a wider one above now serves."""
SEARCH_INDEX = "ix_hutch_tasks_search"
# As hutch.results.models.SEARCH_TEXT_SQL: what PostgreSQL prints back for it, so the
# model compares equal, and queries repeat it exactly so the planner can use the index.
SEARCH_TEXT = (
    "((((((((COALESCE(args::text, ''::text) || chr(10)) || COALESCE(kwargs::text, ''::text))"
    " || chr(10)) || COALESCE(result::text, ''::text)) || chr(10)) || COALESCE(exception_type,"
    " ''::character varying)::text) || chr(10)) || COALESCE(exception_message, ''::text))")


def upgrade() -> None:
    # IF NOT EXISTS: a DBA may have built them beforehand with CREATE INDEX CONCURRENTLY
    for name, columns in ADDED.items():
        op.create_index(name, TABLE, columns, if_not_exists=True,
                        postgresql_include=INCLUDED.get(name, []))
    if op.get_context().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(f"CREATE INDEX IF NOT EXISTS {SEARCH_INDEX} ON {TABLE} "
                   f"USING gin (({SEARCH_TEXT}) gin_trgm_ops)")
    for name in REPLACED:
        op.drop_index(name, table_name=TABLE, if_exists=True)


def downgrade() -> None:
    for name, columns in REPLACED.items():
        op.create_index(name, TABLE, columns, if_not_exists=True)
    if op.get_context().dialect.name == "postgresql":
        op.drop_index(SEARCH_INDEX, table_name=TABLE, if_exists=True)
    for name in ADDED:
        op.drop_index(name, table_name=TABLE, if_exists=True)
