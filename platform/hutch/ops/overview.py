"""The dashboard's overview figures (issue #14): tasks finished over the last hour
or day, per minute (or quarter hour), with throughput, failure rate and run time
percentiles; the queues and workers beside them.

The task figures are two bounded reads of ``hutch_tasks``, both on the
``finished_at`` index (``finished_at >= start of the window``): one ``GROUP BY``
(time bucket, state) that the database aggregates, so its cost follows the rows in
the window, not the table; and the run times of the latest :data:`SAMPLE_ROWS`
tasks of the window, interpolated between ranks: by ``percentile_cont`` on
PostgreSQL (no row leaves the server), the same way in Python on SQLite. A sample
that large puts p99 within a fraction of a percent.

What counts: a row's ``finished_at`` is when its last attempt ended. *Succeeded*
and *failed* are rows in SUCCESS and FAILURE; *retried* are rows that retried at
least once (a row in RETRY waits for its next attempt, a row with ``retries > 0``
ran again), each counted once, in the bucket of its last attempt; *finished*
(throughput) are rows in a final state (SUCCESS, FAILURE, REVOKED).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    case,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql

from ..errors import BrokerError, InvalidQuery
from ..results.models import tasks
from ..results.records import FAILURE, READY_STATES, RETRY, SUCCESS
from ..results.store import ResultStore
from .queues import QueueInfo, delayed_messages, known_routes, queue_infos
from .workers import list_workers, state_counts

if TYPE_CHECKING:
    from ..brokers.base import Admin
    from ..config import Settings


@dataclass(frozen=True)
class Window:
    """A span of the chart: ``seconds`` long, in buckets of ``bucket`` seconds."""

    name: str
    seconds: int
    bucket: int
    label: str

    @property
    def buckets(self) -> int:
        return self.seconds // self.bucket


WINDOWS = {
    "hour": Window("hour", 3600, 60, "last hour, per minute"),
    "day": Window("day", 86400, 900, "last day, per 15 minutes"),
}
"""The windows the overview offers, by name (``?window=day``)."""
DEFAULT_WINDOW = "hour"
SAMPLE_ROWS = 10_000
"""Run time percentiles come from at most this many tasks (the latest of the window)."""
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Bucket:
    """Tasks whose last attempt ended in [``start``, ``start`` + bucket)."""

    start: dt.datetime
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    finished: int = 0


@dataclass(frozen=True)
class TaskFigures:
    """The window's task figures. ``failure_rate``: failed / (succeeded + failed), None
    with neither; ``runtime``: seconds at each of :data:`PERCENTILES` (empty: no run
    finished), from ``sampled`` tasks."""

    window: Window
    since: dt.datetime
    until: dt.datetime
    buckets: list[Bucket]
    runtime: dict[int, float]
    sampled: int

    def total(self, what: str) -> int:
        return sum(getattr(b, what) for b in self.buckets)

    @property
    def throughput(self) -> float:
        """Tasks finished per minute over the window."""
        minutes = (self.until - self.since).total_seconds() / 60
        return self.total("finished") / minutes if minutes > 0 else 0.0

    @property
    def failure_rate(self) -> float | None:
        ended = self.total("succeeded") + self.total("failed")
        return self.total("failed") / ended if ended else None


@dataclass(frozen=True)
class Overview:
    """Everything the overview shows. ``queues`` is None when the broker did not
    answer (the task figures still show)."""

    tasks: TaskFigures
    workers: dict[str, int]
    queues: list[QueueInfo] | None
    delayed: int | None
    errors: list[str] = field(default_factory=list)


def window_of(name: str | None) -> Window:
    """The window called ``name`` (None: the default), or InvalidQuery."""
    window = WINDOWS.get(name or DEFAULT_WINDOW)
    if window is None:
        raise InvalidQuery(f"window must be one of {', '.join(WINDOWS)}", "window")
    return window


def overview(store: ResultStore, broker: Admin, conf: Settings, window: Window,
             now: dt.datetime) -> Overview:
    """The overview at ``now``: task figures and workers from the database, queues from
    the broker (left out, with a note, when it fails)."""
    figures = task_figures(store, window, now)
    workers = list_workers(store)
    try:
        queues = queue_infos(broker, known_routes(conf, workers))
        delayed = delayed_messages(broker)
    except BrokerError:
        return Overview(figures, state_counts(workers), None, None,
                        ["the broker is unavailable: queues left out"])
    notes = [f"queue {q.name}: its node {q.node_down} is down, its counts are unknown"
             for q in queues if q.node_down]
    if delayed is None:
        notes.append("delayed tasks unknown: a delay ladder queue's node is down")
    return Overview(figures, state_counts(workers), queues, delayed, notes)


def task_figures(store: ResultStore, window: Window, now: dt.datetime) -> TaskFigures:
    """Counts per bucket and run time percentiles of the tasks finished in the window
    that ends at ``now`` (its buckets aligned on multiples of the bucket length)."""
    first = int(now.timestamp()) // window.bucket - window.buckets + 1
    since = dt.datetime.fromtimestamp(first * window.bucket, dt.timezone.utc)
    counted = store.read_now("read the overview's counts",
                             lambda conn: _counts(conn, window.bucket, since, now))
    buckets = [_bucket(since + dt.timedelta(seconds=n * window.bucket), counted.get(first + n))
               for n in range(window.buckets)]
    runtime, sampled = store.read_now("read the overview's run times",
                                      lambda conn: _runtime_percentiles(conn, since, now))
    return TaskFigures(window, since, now, buckets, runtime, sampled)


def percentiles(values: Sequence[float], wanted: Sequence[int]) -> dict[int, float]:
    """Each wanted percentile of ``values``, interpolated between the two nearest ranks
    (as PostgreSQL's ``percentile_cont``); empty when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return {}
    out = {}
    for p in wanted:
        rank = (len(ordered) - 1) * p / 100
        low = int(rank)
        high = min(low + 1, len(ordered) - 1)
        out[p] = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    return out


def _bucket(start: dt.datetime, counts: dict[str, int] | None) -> Bucket:
    return Bucket(start, **counts) if counts else Bucket(start)


def _bucket_of(conn: Connection, seconds: int) -> ColumnElement[Any]:
    """The bucket number of ``finished_at`` (seconds since the epoch // ``seconds``)."""
    if conn.dialect.name == "postgresql":
        epoch = func.floor(func.extract("epoch", tasks.c.finished_at))
    else:  # SQLite keeps UTC text: strftime('%s') reads it as UTC
        epoch = func.strftime("%s", tasks.c.finished_at)
    return cast(cast(epoch, BigInteger) // seconds, BigInteger)  # int4 ends in 2038


def _counts(conn: Connection, seconds: int, since: dt.datetime,
            until: dt.datetime) -> dict[int, dict[str, int]]:
    """{bucket number: {succeeded, failed, retried, finished}}, aggregated by the database."""
    bucket = _bucket_of(conn, seconds).label("bucket")
    retried = func.sum(case((tasks.c.state == RETRY, 1), (tasks.c.retries > 0, 1), else_=0))
    query = (select(bucket, tasks.c.state, func.count(), retried)
             .where(tasks.c.finished_at >= since, tasks.c.finished_at <= until)
             .group_by(bucket, tasks.c.state))
    out: dict[int, dict[str, int]] = {}
    for number, state, count, again in conn.execute(query).all():
        into = out.setdefault(int(number), dict.fromkeys(
            ("succeeded", "failed", "retried", "finished"), 0))
        into["succeeded"] += count if state == SUCCESS else 0
        into["failed"] += count if state == FAILURE else 0
        into["retried"] += int(again or 0)
        into["finished"] += count if state in READY_STATES else 0
    return out


def _sample(since: dt.datetime, until: dt.datetime, *columns: Any) -> Select[Any]:
    """The latest :data:`SAMPLE_ROWS` tasks of the window that ran and ended."""
    return (select(*columns)
            .where(tasks.c.finished_at >= since, tasks.c.finished_at <= until,
                   tasks.c.started_at.is_not(None), tasks.c.state.in_((SUCCESS, FAILURE)))
            .order_by(tasks.c.finished_at.desc()).limit(SAMPLE_ROWS))


def _runtime_percentiles(conn: Connection, since: dt.datetime,
                         until: dt.datetime) -> tuple[dict[int, float], int]:
    """(run time percentiles, tasks sampled): ``percentile_cont`` on PostgreSQL (no row
    leaves the server), the same interpolation in Python on SQLite."""
    if conn.dialect.name != "postgresql":
        runs = [max(0.0, (finished - started).total_seconds()) for started, finished in
                conn.execute(_sample(since, until, tasks.c.started_at, tasks.c.finished_at))]
        return percentiles(runs, PERCENTILES), len(runs)
    seconds = func.extract("epoch", tasks.c.finished_at - tasks.c.started_at)
    sample = _sample(since, until, func.greatest(seconds, 0).label("s")).subquery()
    fractions = postgresql.array([literal(p / 100) for p in PERCENTILES])
    query = select(func.percentile_cont(fractions).within_group(sample.c.s), func.count())
    values, count = conn.execute(query).one()
    return (dict(zip(PERCENTILES, map(float, values), strict=True)) if count else {}), int(count)
