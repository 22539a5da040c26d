"""Which worker process still holds a database connection: how a worker tells a live
owner of a STARTED row from a dead one.

A task whose worker lost its *broker* connection keeps running there, while RabbitMQ
gives the message to another worker, whose claim finds the row STARTED by the first.
The first worker's process is alive if it is still connected to PostgreSQL: each
worker process names its connections after itself (``application_name``, set here
before its first connection), and another worker looks for that name in
``pg_stat_activity``. A process that died has no connection left (the server sees
its sockets close), so the answer errs only one way: a live process between two
connections looks dead, and its task may run again, as it did before this check.

SQLite (one host, the embedded default) has no such view: there the answer is
"unknown" and the task runs again as before.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.event import listen

LABEL_MAX = 63
"""PostgreSQL keeps the first 63 bytes of ``application_name`` (NAMEDATALEN - 1)."""

_label: str | None = None


def label_connections(worker: str) -> None:
    """Name this process's PostgreSQL connections opened from now on after ``worker``
    (the name its rows carry in ``hutch_tasks.worker``)."""
    global _label
    _label = label_of(worker)


def label_of(worker: str) -> str:
    return f"hutch {worker}".encode()[:LABEL_MAX].decode(errors="ignore")


def watch_connects(engine: Engine) -> None:
    """Give every new connection of a PostgreSQL ``engine`` this process's label."""
    listen(engine, "do_connect", _labelled)


def _labelled(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
    if _label is not None:
        params["application_name"] = _label


def connected(conn: Connection, worker: str) -> bool:
    """Whether the process named ``worker`` holds a connection to this database now."""
    found = conn.execute(text(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = :label "
        "AND datname = current_database())"), {"label": label_of(worker)}).scalar()
    return bool(found)
