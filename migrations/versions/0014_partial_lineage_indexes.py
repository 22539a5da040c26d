"""hutch_tasks: the indexes of mostly-NULL columns keep only the rows that have a value;
on PostgreSQL ``worker`` compares byte by byte (``COLLATE "C"``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

``ix_hutch_tasks_parent_id``, ``_root_id``, ``_group_id`` and ``_schedule_name`` are
NULL for a task submitted on its own (most tasks), and ``ix_hutch_tasks_worker`` is
NULL while a task is PENDING. Every new row version of a task (PENDING, then its
claim, then its outcome) adds an entry to every index that covers it: PostgreSQL
cannot update in place because indexed columns (``state``, the times) change. Built
``WHERE <column> IS NOT NULL``, these five skip the versions that have no value,
which cuts the write-ahead log of a plain task's three versions by about 15%
(docs/performance.md, "What the indexes cost the write path"). Every query that uses
them compares the column to a value (``=``, ``LIKE``), which implies ``IS NOT NULL``,
so the planner still picks them; none looks up NULLs through them.

The task list's filter for a worker node matches ``worker LIKE 'node:%'``, which a
B-tree serves only under the C collation: under any other, a node that ran few or no
recent tasks read the whole table (171-187 ms at 1,000,000 rows; 0.3-1.9 ms with it).
Nothing sorts by worker, and equality is the same under both.

Each index is dropped and built again under its own name, and the column's collation
changed (no table rewrite), in one transaction: writes to ``hutch_tasks`` wait
meanwhile, and on PostgreSQL reads too (``ALTER TABLE`` locks the table): about 2 s
at 1,000,000 rows. docs/dba.md says how to build the indexes
``CONCURRENTLY`` beforehand instead (under other names, then renamed); an index that
already has a predicate, and a column already in "C", are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "hutch_tasks"
PARTIAL = {
    "ix_hutch_tasks_worker": ["worker", "created_at", "task_id"],
    "ix_hutch_tasks_parent_id": ["parent_id"],
    "ix_hutch_tasks_root_id": ["root_id"],
    "ix_hutch_tasks_group_id": ["group_id"],
    "ix_hutch_tasks_schedule_name": ["schedule_name"],
}
"""Each index by name, with its columns: the first is the one that must be set."""
WORKER_INDEX = "ix_hutch_tasks_worker"


def _where(columns: list[str]) -> dict[str, sa.TextClause]:
    predicate = sa.text(f"{columns[0]} IS NOT NULL")
    return {"postgresql_where": predicate, "sqlite_where": predicate}


def _is_partial(name: str) -> bool:
    """Whether ``name`` already has a predicate (a DBA built it beforehand); offline
    (``hutch db upgrade --sql``) there is nothing to ask, so the DDL is printed."""
    if op.get_context().as_sql:
        return False
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        found = bind.execute(sa.text(
            "SELECT indpred IS NOT NULL FROM pg_index WHERE indexrelid = to_regclass(:n)"),
            {"n": name}).scalar()
    else:
        found = bind.execute(sa.text(
            "SELECT partial FROM pragma_index_list(:t) WHERE name = :n"),
            {"t": TABLE, "n": name}).scalar()
    return bool(found)


def _worker_collation(collation: str) -> None:
    """PostgreSQL: ``worker`` under ``collation`` (its indexes are rebuilt, not the table)."""
    if op.get_context().dialect.name != "postgresql":
        return
    if not op.get_context().as_sql and op.get_bind().execute(sa.text(
            "SELECT collation_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = :t AND column_name = 'worker'"),
            {"t": TABLE}).scalar() == collation:
        return
    op.execute(f'ALTER TABLE {TABLE} ALTER COLUMN worker TYPE varchar(255) COLLATE "{collation}"')


def upgrade() -> None:
    for name, columns in PARTIAL.items():
        built = _is_partial(name)
        if not built:
            op.drop_index(name, table_name=TABLE, if_exists=True)
        if name == WORKER_INDEX:
            _worker_collation("C")  # before its index is built, not rebuilt after
        if not built:
            op.create_index(name, TABLE, columns, **_where(columns))


def downgrade() -> None:
    for name, columns in PARTIAL.items():
        op.drop_index(name, table_name=TABLE, if_exists=True)
        if name == WORKER_INDEX:
            _worker_collation("default")
        op.create_index(name, TABLE, columns)
