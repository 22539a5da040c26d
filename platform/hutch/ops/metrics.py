"""What ``/metrics`` reports, read from the SQL tables and the broker: plain numbers,
no Prometheus types (hutch.web.metrics turns them into metric families).

Each reader is one bounded read of one source, so the scrape can leave out a part
whose source is down and keep the rest:

- :func:`task_counts`: ``hutch_tasks`` rows by task name and state (one ``GROUP BY``
  over the table: a full scan, the dearest read; on PostgreSQL cut by a statement
  timeout);
- :func:`recent_timings`: run times and queue waits of the tasks that finished in the
  last :data:`WINDOW_SECONDS`, at most :data:`WINDOW_ROWS` of them (the
  ``finished_at`` index);
- :func:`beat_holder`: the beat that holds the lease now and the broker node it
  publishes through (``hutch_beat_lease``);
- :func:`route_depths` and the broker's ``delayed_count``: the queues, through the
  broker's admin interface.

Labels stay few whatever the load: task names beyond the :data:`TASK_NAMES_CAP` most
frequent ones are counted under :data:`OTHER`, routes beyond :data:`ROUTES_CAP` are left
out, and no task id is ever a label.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select, text

from ..beat.models import beat_lease
from ..brokers.base import Admin
from ..results.models import tasks
from ..results.store import ResultStore
from .queues import dead_letter_count

TASK_NAMES_CAP = 50
"""Distinct task names exported per metric family; the rarer ones are summed under
:data:`OTHER`, so an app that makes task names up at run time cannot flood Prometheus."""
OTHER = "other"
UNKNOWN = "unknown"
"""The name label of rows whose task name was never written (revoked before sent)."""
ROUTES_CAP = 100
"""Routes whose queues are counted at each scrape (each costs broker round trips)."""
WINDOW_SECONDS = 300.0
"""The run time and queue wait histograms describe the tasks finished this long ago
at most (a sliding window, not a count since start: rows expire)."""
WINDOW_ROWS = 10_000
"""At most this many finished tasks (the latest) feed the histograms of one scrape."""
BEAT_LEASE = "beat"
"""The lease row beat takes (hutch.beat.store.Lease's default name)."""


def capped_names(weights: Mapping[str, float], cap: int = TASK_NAMES_CAP) -> set[str]:
    """The ``cap`` names of most weight (ties by name, so scrapes agree)."""
    ranked = sorted(weights, key=lambda name: (-weights[name], name))
    return set(ranked[:cap])


def label_of(name: str, kept: set[str]) -> str:
    return name if name in kept else OTHER


def task_counts(store: ResultStore, timeout: float,
                cap: int = TASK_NAMES_CAP) -> dict[tuple[str, str], int]:
    """``{(name, state): rows}`` of ``hutch_tasks``, names capped (see module doc)."""
    query = (select(tasks.c.name, tasks.c.state, func.count())
             .group_by(tasks.c.name, tasks.c.state))

    def read(conn: Connection) -> list[tuple[str | None, str, int]]:
        _limit_statement(conn, store, timeout)
        return [(row[0], row[1], row[2]) for row in conn.execute(query)]

    rows = store.transaction("count tasks by name and state", read)
    totals: Counter[str] = Counter()
    for name, _, count in rows:
        totals[name or UNKNOWN] += count
    kept = capped_names(totals, cap)
    counts: Counter[tuple[str, str]] = Counter()
    for name, state, count in rows:
        counts[label_of(name or UNKNOWN, kept), state] += count
    return dict(counts)


@dataclass
class Timings:
    """Seconds observed per ``(name, queue)`` among the recently finished tasks."""

    runtime: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    """``finished_at - started_at``: the last run's run time."""
    queue_wait: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    """``started_at - max(created_at, eta)``: from when the task could run to when it
    started, a deliberate delay (eta, countdown) left out, as celery-exporter measures
    it; first attempts only (a retry's row keeps the first submit's ``created_at``)."""


def recent_timings(store: ResultStore, timeout: float, now: dt.datetime,
                   window: float = WINDOW_SECONDS, limit: int = WINDOW_ROWS,
                   cap: int = TASK_NAMES_CAP) -> Timings:
    """Timings of the (at most ``limit``) tasks finished in the last ``window`` seconds."""
    since = now - dt.timedelta(seconds=window)
    query = (select(tasks.c.name, tasks.c.queue, tasks.c.retries, tasks.c.created_at,
                    tasks.c.eta, tasks.c.started_at, tasks.c.finished_at)
             .where(tasks.c.finished_at >= since, tasks.c.started_at.is_not(None))
             .order_by(tasks.c.finished_at.desc()).limit(limit))

    def read(conn: Connection) -> list[Any]:
        _limit_statement(conn, store, timeout)
        return list(conn.execute(query).all())

    rows = store.transaction("read recent task timings", read)
    kept = capped_names(Counter(row.name or UNKNOWN for row in rows), cap)
    timings = Timings()
    for row in rows:
        key = (label_of(row.name or UNKNOWN, kept), row.queue or UNKNOWN)
        timings.runtime.setdefault(key, []).append(
            max(0.0, (row.finished_at - row.started_at).total_seconds()))
        if row.retries == 0:
            ready = max(row.created_at, row.eta) if row.eta is not None else row.created_at
            timings.queue_wait.setdefault(key, []).append(
                max(0.0, (row.started_at - ready).total_seconds()))
    return timings


@dataclass(frozen=True)
class BeatHolder:
    """The active beat, and the broker node (``host:port``) it publishes through (None
    until it has published)."""

    holder: str
    broker_node: str | None


def beat_holder(store: ResultStore, now: dt.datetime) -> BeatHolder | None:
    """Who holds the beat lease now (an unexpired row), or None."""
    query = select(beat_lease.c.holder, beat_lease.c.broker_node).where(
        beat_lease.c.name == BEAT_LEASE, beat_lease.c.expires_at > now)
    row = store.read_now("read the beat lease", lambda conn: conn.execute(query).first())
    return BeatHolder(str(row.holder), row.broker_node) if row is not None else None


@dataclass(frozen=True)
class RouteDepth:
    """One route's queues now; counts None while the queue's cluster node is down."""

    ready: int | None
    consumers: int | None
    dead: int | None
    node_down: str | None = None


def route_depths(broker: Admin, routes: Iterable[str],
                 cap: int = ROUTES_CAP) -> dict[str, RouteDepth]:
    """Ready messages, consumers and dead letters of the first ``cap`` routes (sorted)."""
    depths = {}
    for route in sorted(set(routes))[:cap]:
        stats = broker.queue_stats(route)
        dead = dead_letter_count(broker, route)
        if stats.node_down is not None:
            depths[route] = RouteDepth(None, None, dead, stats.node_down)
        else:
            depths[route] = RouteDepth(stats.ready, stats.consumers, dead)
    return depths


def _limit_statement(conn: Connection, store: ResultStore, timeout: float) -> None:
    """On PostgreSQL, cancel this transaction's statements after ``timeout`` seconds
    (the server stops working on a scrape nobody waits for any more)."""
    if store.dialect == "postgresql":
        conn.execute(text(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}"))
