"""``hutch_workers``: the heartbeat rows of worker nodes, written and read here.

A worker upserts its row every ``worker_heartbeat_interval`` seconds in one
statement (:meth:`WorkerStore.beat`). Nobody ever marks another worker offline:
a reader computes each row's *effective* state (:func:`effective_state`), so a
worker killed with SIGKILL, or whose host vanished, reads offline 3 intervals
after its last heartbeat with no process left to say so.

Time comes from one clock per database: on PostgreSQL the server's own
(``now()`` in the upsert and in the read), so hosts whose clocks disagree still
agree on who is silent; SQLite lives on one host, whose clock both sides use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from .models import workers
from .store import ResultStore

ONLINE = "online"
STOPPING = "stopping"
"""A warm shutdown began: no new task starts, running ones finish."""
OFFLINE = "offline"
STATES = (ONLINE, STOPPING, OFFLINE)

SILENT_INTERVALS = 3
"""Heartbeat intervals without a write after which a worker reads offline."""

COUNTS = ("processed", "succeeded", "failed", "retried")


@dataclass(frozen=True)
class WorkerBeat:
    """What one heartbeat writes: the worker's identity and layout, and its numbers now."""

    hostname: str
    pid: int
    version: str
    pool: str
    concurrency: int
    processes: int
    """Worker processes alive: the prefork children, or 1."""
    queues: Sequence[str]
    prefetch: int
    state: str
    heartbeat_interval: float
    started_at: dt.datetime
    processed: int = 0
    """Task attempts that ended here: succeeded + failed + retried + revoked."""
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    app: str | None = None
    loadavg_1: float | None = None
    loadavg_5: float | None = None
    loadavg_15: float | None = None
    rss_bytes: int | None = None
    """Resident memory of every process of the worker (supervisor and children)."""
    python_version: str | None = None
    platform: str | None = None


@dataclass(frozen=True)
class WorkerRecord(WorkerBeat):
    """A row as read: ``state`` is the effective state, ``stored_state`` what the
    worker last wrote, ``last_heartbeat_age`` seconds since its last write."""

    last_heartbeat_at: dt.datetime | None = None
    stored_state: str = ONLINE
    last_heartbeat_age: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (datetimes as ISO 8601), for ``hutch workers --json`` and the dashboard."""
        data = asdict(self)
        data["queues"] = list(self.queues)
        for name in ("started_at", "last_heartbeat_at"):
            data[name] = data[name].isoformat() if data[name] is not None else None
        return data


BEAT_FIELDS = tuple(f.name for f in fields(WorkerBeat))


def effective_state(stored: str, last_heartbeat_at: dt.datetime, interval: float,
                    now: dt.datetime) -> str:
    """``stored`` unless the worker has been silent for :data:`SILENT_INTERVALS`
    intervals, then offline (a SIGKILL, a crash, a host gone)."""
    if stored == OFFLINE:
        return OFFLINE
    silent = (now - last_heartbeat_at).total_seconds()
    return OFFLINE if silent > SILENT_INTERVALS * interval else stored


class WorkerStore:
    """``hutch_workers`` on a result store's database (its retry and one-line errors)."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store
        self._postgres = store.dialect == "postgresql"
        self._beat = _beat_upsert(self._postgres)

    def beat(self, beat: WorkerBeat) -> None:
        """Insert or rewrite ``beat.hostname``'s row: one statement, one round trip.
        The statement is built once and the row passed as its parameters (see
        :func:`_beat_upsert` for why)."""
        row: dict[str, Any] = asdict(beat)
        row["queues"] = list(beat.queues)
        if not self._postgres:
            row["last_heartbeat_at"] = _utcnow()
        self.store.statement("write the worker heartbeat", lambda c: c.execute(self._beat, row))

    def workers(self, hostname: str | None = None) -> list[WorkerRecord]:
        """Every row (or ``hostname``'s), by hostname, each with its effective state."""
        query = select(workers).order_by(workers.c.hostname)
        if hostname is not None:
            query = query.where(workers.c.hostname == hostname)
        if self._postgres:
            query = query.add_columns(func.now().label("db_now"))
        return self.store.read_now("read the workers", lambda c: _records(c, query))

    def delete_gone(self, before: dt.datetime, batch: int) -> int:
        """Delete up to ``batch`` rows whose last heartbeat is older than ``before`` (the
        beat's cleanup; an online worker rewrites its row every interval, so a row this
        old belongs to a worker gone for good)."""
        chosen = (select(workers.c.hostname).where(workers.c.last_heartbeat_at < before)
                  .limit(batch).scalar_subquery())
        statement = delete(workers).where(workers.c.hostname.in_(chosen))
        return self.store.transaction("delete gone workers",
                                      lambda c: c.execute(statement).rowcount)


def _beat_upsert(postgres: bool) -> Any:
    """The heartbeat's upsert, with every column of :class:`WorkerBeat` a parameter.
    Built once per store, not per beat: ``excluded`` is an alias of the table whose
    columns and their proxies form reference cycles, so a statement built on every
    beat left about 200 objects of cyclic garbage each time. The supervisor of a
    prefork worker allocates little else, so they were promoted to the oldest
    generation, which Python collects only once it has grown by a quarter (some
    100,000 objects after a worker's imports): its RSS rose by about 2 KiB/s, idle or
    not, for an hour or more before a full collection (``hutch bench --only memory``).
    """
    insert = (postgresql.insert if postgres else sqlite.insert)(workers)
    if postgres:
        insert = insert.values(last_heartbeat_at=func.now())
    columns = [*BEAT_FIELDS, "last_heartbeat_at"]
    return insert.on_conflict_do_update(
        index_elements=[workers.c.hostname],
        set_={name: insert.excluded[name] for name in columns if name != "hostname"})


def _records(conn: Connection, query: Any) -> list[WorkerRecord]:
    out = []
    for row in conn.execute(query).mappings():
        now = _aware(row["db_now"]) if "db_now" in row else _utcnow()
        last = row["last_heartbeat_at"]
        values = {name: row[name] for name in BEAT_FIELDS}
        values["state"] = effective_state(row["state"], last, row["heartbeat_interval"], now)
        out.append(WorkerRecord(**values, last_heartbeat_at=last, stored_state=row["state"],
                                last_heartbeat_age=max(0.0, (now - last).total_seconds())))
    return out


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
