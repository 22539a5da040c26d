"""The beat tables: schedules, their claimed runs, and the active beat's lease.

Defined on the result store's ``metadata`` (same database, same alembic
history); the DDL lives in ``migrations/versions/0004_create_hutch_schedules.py``
(and 0005, ``catch_up``; 0013, the lease's ``broker_node``) and docs/dba.md describes
every column.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)

from ..envelope import ID_LENGTH
from ..results.models import UTCDateTime, json_column, metadata

NAME_LENGTH = 200

schedules = Table(
    "hutch_schedules",
    metadata,
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("task", String(255), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("interval_seconds", Float),
    Column("crontab", String(255)),
    Column("clocked_at", UTCDateTime),
    Column("args", json_column()),
    Column("kwargs", json_column()),
    Column("options", json_column()),
    Column("timezone", String(64), nullable=False, server_default=text("'UTC'")),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("one_off", Boolean, nullable=False, server_default=false()),
    Column("start_at", UTCDateTime),
    Column("end_at", UTCDateTime),
    Column("description", Text),
    Column("catch_up", String(8), nullable=False, server_default=text("'one'")),
    Column("catch_up_limit", Integer, nullable=False, server_default=text("100")),
    Column("source", String(16), nullable=False, server_default=text("'runtime'")),
    Column("last_run_at", UTCDateTime),
    Column("total_run_count", Integer, nullable=False, server_default=text("0")),
    Column("next_run_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP")),
    Column("updated_at", UTCDateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP")),
    PrimaryKeyConstraint("name", name="pk_hutch_schedules"),
    Index("ix_hutch_schedules_next_run_at", "next_run_at"),
)
"""One row per schedule; beat re-reads it every ``beat_poll_interval`` seconds."""

schedule_runs = Table(
    "hutch_schedule_runs",
    metadata,
    Column("schedule_name", String(NAME_LENGTH), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("task_id", String(ID_LENGTH), nullable=False),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("claimed_by", String(255)),
    Column("sent_at", UTCDateTime),
    Column("manual", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("schedule_name", "due_at", name="pk_hutch_schedule_runs"),
    UniqueConstraint("task_id", name="uq_hutch_schedule_runs_task_id"),
    Index("ix_hutch_schedule_runs_sent_at", "sent_at"),
    Index("ix_hutch_schedule_runs_claimed_at", "claimed_at"),
)
"""Each due run, claimed once: the primary key (schedule, due time) is what makes two
beats, a failover or a restart unable to send the same run twice."""

beat_lease = Table(
    "hutch_beat_lease",
    metadata,
    Column("name", String(64), nullable=False),
    Column("holder", String(255), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("renewed_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("broker_node", String(255)),
    PrimaryKeyConstraint("name", name="pk_hutch_beat_lease"),
)
"""The active beat: whoever holds the unexpired row. Works on SQLite and PostgreSQL alike.
``broker_node``: the RabbitMQ node (``host:port``) the holder publishes through,
written with each renewal (migration 0013)."""
