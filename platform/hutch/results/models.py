"""hutch's tables (``hutch_tasks``, ``hutch_revoked``, ``hutch_groups``,
``hutch_group_counts``, ``hutch_workers``, ``hutch_web_tokens``, ``hutch_audit``,
``hutch_task_attempts``, ``hutch_revoked_stamps``), and the one way hutch opens a result database.

The table is defined here for reading and writing; its DDL lives in the alembic
revisions under ``migrations/versions`` (a test checks the two agree). Both
SQLite and PostgreSQL are first-class: JSON columns become ``jsonb`` on
PostgreSQL, and datetimes are always stored and returned as UTC.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
    false,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from ..config import normalize_backend_url
from ..envelope import ID_LENGTH
from .owners import watch_connects

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another process's write lock before failing."""


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime stored as UTC.

    PostgreSQL keeps the offset itself (``timestamptz``); SQLite has no datetime
    type and SQLAlchemy would store the wall-clock digits of any offset. So every
    value is converted to UTC on the way in (naive values are taken as UTC) and
    comes back aware, on every backend.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def _json() -> Any:
    # none_as_null: Python None is SQL NULL, so COALESCE can keep a stored value.
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


json_column = _json  # for the tables other packages define on this metadata (hutch.beat)


metadata = MetaData()


def _set(column: str) -> dict[str, Any]:
    """A partial index's predicate: only the rows where ``column`` has a value."""
    predicate = text(f"{column} IS NOT NULL")
    return {"postgresql_where": predicate, "sqlite_where": predicate}


tasks = Table(
    "hutch_tasks",
    metadata,
    Column("task_id", String(ID_LENGTH), nullable=False),
    Column("name", String(255)),
    Column("state", String(16), nullable=False),
    Column("args", _json()),
    Column("kwargs", _json()),
    Column("result", _json()),
    Column("result_encoded", LargeBinary),
    Column("result_content_type", String(128)),
    Column("exception_type", String(255)),
    Column("exception_message", Text),
    Column("exception_args", _json()),
    Column("traceback", Text),
    Column("queue", String(255)),
    # byte-wise on PostgreSQL (migration 0014): a node's LIKE 'node:%' reads its index
    Column("worker", String(255).with_variant(String(255, collation="C"), "postgresql")),
    Column("retries", Integer, nullable=False, server_default=text("0")),
    Column("parent_id", String(ID_LENGTH)),
    Column("root_id", String(ID_LENGTH)),
    Column("group_id", String(ID_LENGTH)),
    Column("eta", UTCDateTime),
    Column("expires", UTCDateTime),
    Column("schedule_name", String(255)),
    Column("created_at", UTCDateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP")),
    Column("received_at", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP")),
    Column("stamps", _json()),
    PrimaryKeyConstraint("task_id", name="pk_hutch_tasks"),
    Index("ix_hutch_tasks_state", "state"),
    Index("ix_hutch_tasks_name_created_at", "name", "created_at", "task_id",
          postgresql_include=["state"]),
    Index("ix_hutch_tasks_created_at", "created_at", "task_id"),
    Index("ix_hutch_tasks_received_at", "received_at", "task_id"),
    Index("ix_hutch_tasks_started_at", "started_at", "task_id"),
    Index("ix_hutch_tasks_finished_at_task_id", "finished_at", "task_id"),
    Index("ix_hutch_tasks_state_created_at", "state", "created_at", "task_id"),
    Index("ix_hutch_tasks_queue", "queue", "created_at", "task_id"),
    Index("ix_hutch_tasks_worker", "worker", "created_at", "task_id", **_set("worker")),
    Index("ix_hutch_tasks_parent_id", "parent_id", **_set("parent_id")),
    Index("ix_hutch_tasks_root_id", "root_id", **_set("root_id")),
    Index("ix_hutch_tasks_group_id", "group_id", **_set("group_id")),
    Index("ix_hutch_tasks_schedule_name", "schedule_name", **_set("schedule_name")),
)
"""One row per task id. The indexes ending in ``task_id`` (migration 0010) serve the
dashboard's task list: each sort and common filter ends in the list's tie-breaker,
so a page is one range read of one index (hutch.ops.tasks, docs/dba.md). Those of
columns that are NULL on most row versions hold only the rows with a value
(migration 0014), so a plain task's versions add no entry to them."""


task_attempts = Table(
    "hutch_task_attempts",
    metadata,
    Column("task_id", String(ID_LENGTH), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(255)),
    Column("started_at", UTCDateTime),
    Column("retried_at", UTCDateTime, nullable=False),
    Column("eta", UTCDateTime),
    Column("exception_type", String(255)),
    Column("exception_message", Text),
    PrimaryKeyConstraint("task_id", "attempt", name="pk_hutch_task_attempts"),
)
"""The attempts of a task that failed and were retried, one row each (``attempt``: the
``retries`` of that attempt, 0 for the first run), inserted with the RETRY that ended
it; ``hutch_tasks`` keeps only the latest attempt's times (docs/dba.md)."""


SEARCH_TEXT_SQL = (
    "((((((((COALESCE(args::text, ''::text) || chr(10)) || COALESCE(kwargs::text, ''::text))"
    " || chr(10)) || COALESCE(result::text, ''::text)) || chr(10)) || COALESCE(exception_type,"
    " ''::character varying)::text) || chr(10)) || COALESCE(exception_message, ''::text))")
"""What the task list's text search looks in on PostgreSQL: the searched columns' text
joined by newlines. Written as PostgreSQL prints it back (alembic reflects it so), so the
trigram index ``ix_hutch_tasks_search`` on it compares equal to this model, and a
query repeating it exactly is served by that index (migration 0010 spells it again)."""

search_text = literal_column(SEARCH_TEXT_SQL, Text)

Index("ix_hutch_tasks_search", search_text.label("search_text"), postgresql_using="gin",
      postgresql_ops={"search_text": "gin_trgm_ops"}, _table=tasks).ddl_if(dialect="postgresql")
"""PostgreSQL only (pg_trgm): SQLite's search reads every row, fine at its sizes."""

revoked = Table(
    "hutch_revoked",
    metadata,
    Column("task_id", String(ID_LENGTH), nullable=False),
    Column("revoked_at", UTCDateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP")),
    Column("honour_until", UTCDateTime, nullable=False),
    Column("terminate", Boolean, nullable=False, server_default=false()),
    Column("signal", String(16)),
    PrimaryKeyConstraint("task_id", name="pk_hutch_revoked"),
    Index("ix_hutch_revoked_honour_until", "honour_until"),
)
"""Revocations: workers load the rows still to be honoured when they start, and learn
of new ones from the control broadcast, so a revocation outlives every worker restart."""

revoked_stamps = Table(
    "hutch_revoked_stamps",
    metadata,
    Column("name", String(255), nullable=False),
    Column("value", Text, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP")),
    Column("honour_until", UTCDateTime, nullable=False),
    Column("terminate", Boolean, nullable=False, server_default=false()),
    Column("signal", String(16)),
    PrimaryKeyConstraint("name", "value", name="pk_hutch_revoked_stamps"),
    Index("ix_hutch_revoked_stamps_honour_until", "honour_until"),
)
"""``revoke_by_stamped_headers``: a task carrying stamp ``name`` with ``value`` (one
value, as canonical JSON text) is refused, as a revoked id is (hutch_revoked)."""


groups = Table(
    "hutch_groups",
    metadata,
    Column("group_id", String(ID_LENGTH), nullable=False),
    Column("parent_id", String(ID_LENGTH)),
    Column("root_id", String(ID_LENGTH)),
    Column("member_ids", _json(), nullable=False),
    Column("size", Integer, nullable=False),
    Column("body", _json()),
    Column("body_id", String(ID_LENGTH)),
    Column("state", String(16)),
    Column("completed", Integer, nullable=False, server_default=text("0")),
    Column("failed", Integer, nullable=False, server_default=text("0")),
    Column("failed_task_id", String(ID_LENGTH)),
    Column("created_at", UTCDateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP")),
    Column("finished_at", UTCDateTime),
    Column("body_sent_at", UTCDateTime),
    Column("notify", String(200)),
    PrimaryKeyConstraint("group_id", name="pk_hutch_groups"),
    Index("ix_hutch_groups_root_id", "root_id"),
    Index("ix_hutch_groups_parent_id", "parent_id"),
    Index("ix_hutch_groups_body_id", "body_id"),
)
"""Groups and chords: ordered member ids, and for a chord its body and its state
(docs/dba.md)."""

group_counts = Table(
    "hutch_group_counts",
    metadata,
    Column("group_id", String(ID_LENGTH), nullable=False),
    Column("shard", String(255), nullable=False),
    Column("completed", Integer, nullable=False, server_default=text("0")),
    Column("failed", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("group_id", "shard", name="pk_hutch_group_counts"),
)
"""A chord's count, one row per worker process that recorded header outcomes, so
concurrent workers never contend for one counter row."""

workers = Table(
    "hutch_workers",
    metadata,
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("app", String(255)),
    Column("version", String(64), nullable=False),
    Column("pool", String(16), nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("processes", Integer, nullable=False),
    Column("queues", _json(), nullable=False),
    Column("prefetch", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("heartbeat_interval", Float, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("last_heartbeat_at", UTCDateTime, nullable=False),
    Column("processed", BigInteger, nullable=False, server_default=text("0")),
    Column("succeeded", BigInteger, nullable=False, server_default=text("0")),
    Column("failed", BigInteger, nullable=False, server_default=text("0")),
    Column("retried", BigInteger, nullable=False, server_default=text("0")),
    Column("loadavg_1", Float),
    Column("loadavg_5", Float),
    Column("loadavg_15", Float),
    Column("rss_bytes", BigInteger),
    Column("python_version", String(32)),
    Column("platform", String(255)),
    PrimaryKeyConstraint("hostname", name="pk_hutch_workers"),
    Index("ix_hutch_workers_last_heartbeat_at", "last_heartbeat_at"),
)
"""One row per worker node (``name@host``), rewritten by its heartbeat every
``worker_heartbeat_interval`` seconds; read with hutch.results.workers, which says
offline for a row silent for 3 intervals (docs/dba.md)."""

web_tokens = Table(
    "hutch_web_tokens",
    metadata,
    Column("name", String(255), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP")),
    PrimaryKeyConstraint("name", name="pk_hutch_web_tokens"),
    Index("ux_hutch_web_tokens_token_hash", "token_hash", unique=True),
)
"""The bearer tokens of ``hutch web``'s API (``hutch web token create``): each one's
SHA-256 in hex, never the token itself (hutch.web.tokens); revoking deletes the row."""

audit = Table(
    "hutch_audit",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), autoincrement=True,
           nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("detail", _json()),
    Column("client", String(255)),
    PrimaryKeyConstraint("id", name="pk_hutch_audit"),
    Index("ix_hutch_audit_at", "at"),
    Index("ix_hutch_audit_target", "target", "at"),
)
"""What hutch web's actions did: one row per action tried (hutch.ops.audit), never
updated; ``outcome`` is ``ok`` or ``failed`` (``detail`` says why)."""

IN_CHUNK = 500
"""Ids per ``IN (...)`` list; keeps SQLite well under its bound-parameter limit."""


def rows_by_ids(conn: Connection, column: Column[Any], ids: Iterable[str]) -> Iterator[Any]:
    """The rows of ``column``'s table whose ``column`` is in ``ids`` (as mappings), read
    ``IN_CHUNK`` ids at a time; duplicate ids are read once."""
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), IN_CHUNK):
        query = select(column.table).where(column.in_(unique[start:start + IN_CHUNK]))
        yield from conn.execute(query).mappings()


def is_sqlite_memory(url: str) -> bool:
    """Whether ``url`` names a private in-memory SQLite database."""
    parsed = make_url(normalize_backend_url(url))
    if parsed.get_backend_name() != "sqlite":
        return False
    return parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"


def make_engine(url: str, *, autocommit: bool = False) -> Engine:
    """An engine for a result backend URL (Celery's ``db+`` prefix accepted).

    SQLite gets WAL (readers never block the writer) and a busy timeout (several
    worker processes share one file); ``:memory:`` shares one connection so every
    thread sees the same database. PostgreSQL uses psycopg 3 and pings pooled
    connections so a server restart costs one reconnect, not an error.
    """
    sa_url = normalize_backend_url(url)
    if make_url(sa_url).get_backend_name() == "sqlite":
        memory = is_sqlite_memory(url)
        engine = _sqlite_engine(sa_url, memory=memory)
        if memory:
            return engine  # a forked child keeps its copy of the database with the connection
    else:
        # No pre-ping (a round trip on every checkout, on the hot path): a connection
        # found dead is retried once by ResultStore._run instead.
        options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
        engine = create_engine(sa_url, pool_size=5, max_overflow=10, pool_recycle=1800,
                               **options)
        watch_connects(engine)  # a worker's connections carry its name (results/owners.py)
    _forget_pool_after_fork(engine)
    return engine


def _forget_pool_after_fork(engine: Engine) -> None:
    """A forked child (prefork pool) must not share its parent's sockets: it opens its own."""
    ref = weakref.ref(engine)

    def in_child() -> None:
        child_engine = ref()
        if child_engine is not None:
            child_engine.dispose(close=False)

    os.register_at_fork(after_in_child=in_child)


def _sqlite_engine(sa_url: str, *, memory: bool) -> Engine:
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if memory:
        options["poolclass"] = StaticPool
    engine = create_engine(sa_url, **options)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # The sqlite3 module's own transaction handling skips BEGIN before DDL, so a
        # migration could half-apply; hutch issues BEGIN itself (SQLAlchemy's recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching a new file to WAL takes a lock that another
        # process or thread opening it at the same moment must wait for, not fail on.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not memory:
            _switch_to_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # "BEGIN IMMEDIATE" (asked for with execution_options) takes the write lock up front.
        connection.exec_driver_sql(connection.get_execution_options().get("sqlite_begin", "BEGIN"))

    return engine


def _switch_to_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another connection holds the new file:
    SQLite answers "database is locked" to it without waiting for the busy timeout
    when several connections open a brand-new file at once (seen with a client's
    background writer and a worker starting together)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
