"""The store's per-task statements, compiled once (PostgreSQL).

SQLAlchemy finds a statement's compiled form in its cache by a key that spells out
the whole statement tree, and it hashes that key again at every execution: for the
batch upsert a tuple of about 3,800 elements, about 24 µs of CPU each time. A worker
given tasks one at a time runs two of those statements a task (the claim and the
outcome), and the hashing was about a tenth of its children's CPU, more than psycopg's
own work (docs/performance.md, "Statements compiled once"). A :class:`Precompiled`
statement keeps the SQL text and is run with ``exec_driver_sql``: the same text
and parameters reach the driver, without the lookup.

That skips SQLAlchemy's type processing of parameters and returned columns, so
:func:`compile_once` accepts only statements where it does nothing on the
dialect: anything else stays a SQLAlchemy statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

Statement = TypeVar("Statement", bound=ClauseElement)


@dataclass(frozen=True)
class Precompiled:
    """A statement's SQL in the driver's own parameter style."""

    sql: str

    def run(self, conn: Connection,
            parameters: dict[str, Any] | list[dict[str, Any]]) -> CursorResult[Any]:
        return conn.exec_driver_sql(self.sql, parameters)


def compile_once(statement: Statement, dialect: Dialect) -> Precompiled | Statement:
    """``statement`` compiled for ``dialect``, or unchanged when running its text
    as it is would change a value on the way in or out (a type with a bind or
    result processor on this dialect), it carries values of its own, or its text is
    finished at execution (an expanding ``IN``)."""
    compiled = statement.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler):  # DDL
        return statement
    binds = compiled.binds.values()
    if any(bind.value is not None or bind.callable is not None or bind.expanding
           or bind.literal_execute for bind in binds):
        return statement
    if any(bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds):
        return statement
    returned = getattr(statement, "exported_columns", ())
    if any(col.type.dialect_impl(dialect).result_processor(dialect, None) for col in returned):
        return statement
    return Precompiled(compiled.string)
