"""Tasks, workers and queues as the dashboard and its JSON API read them (issue #14).

Read-only queries over ``hutch_tasks`` (through the result store's engine and its
one-line errors) and over the broker's admin interface; no HTTP here, so the
pages and the API share them.

The task list is paginated by keyset, never by OFFSET: a page ends with an opaque
cursor holding the last row's sort key and task id, and the next page starts
strictly after it. That costs the same on page 1 and page 10,000, and rows
written meanwhile neither repeat nor vanish across pages. Ties on the sort key
are broken by the task id, so the order is total and stable.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Select,
    String,
    and_,
    cast,
    func,
    or_,
    select,
    tuple_,
)

from ..errors import InvalidQuery
from ..results.models import tasks
from ..results.records import ALL_STATES, TaskRecord
from ..results.store import RECORD_FIELDS, ResultStore

if TYPE_CHECKING:
    from ..brokers.base import Admin
    from ..config import Settings
    from ..results.workers import WorkerRecord

MAX_LIMIT = 500
"""The largest page; a bigger ``limit`` is refused rather than quietly cut."""
DEFAULT_LIMIT = 50

SORTS = {
    "created": tasks.c.created_at,
    "received": tasks.c.received_at,
    "started": tasks.c.started_at,
    "finished": tasks.c.finished_at,
    "name": tasks.c.name,
    "state": tasks.c.state,
}
"""Sortable columns by their API name (``-created``: newest first, the default)."""
DEFAULT_SORT = "-created"

SEARCHED = (tasks.c.args, tasks.c.kwargs, tasks.c.result, tasks.c.exception_type,
            tasks.c.exception_message)
"""What ``search`` looks in: a LIKE over each, no index can serve it (a full scan)."""

EXACT = ("name", "queue", "root_id", "group_id", "parent_id", "schedule_name")
"""Filters that match a column exactly (indexed: name, root/group/parent id, schedule)."""


@dataclass(frozen=True)
class TaskFilters:
    """What the task list keeps; every field left None keeps everything.
    ``states``: any of these; the time bounds are inclusive after, exclusive before."""

    states: tuple[str, ...] = ()
    name: str | None = None
    queue: str | None = None
    worker: str | None = None
    root_id: str | None = None
    group_id: str | None = None
    parent_id: str | None = None
    schedule_name: str | None = None
    received_after: dt.datetime | None = None
    received_before: dt.datetime | None = None
    finished_after: dt.datetime | None = None
    finished_before: dt.datetime | None = None
    search: str | None = None

    def __post_init__(self) -> None:
        for state in self.states:
            if state not in ALL_STATES:
                raise InvalidQuery(f"state {state!r} is not one of {', '.join(ALL_STATES)}",
                                   "state")


@dataclass(frozen=True)
class TaskPage:
    """One page of the task list; ``next_cursor`` is None on the last page."""

    items: list[TaskRecord]
    next_cursor: str | None
    sort: str


def list_tasks(store: ResultStore, filters: TaskFilters = TaskFilters(), *,
               after: str | None = None, limit: int = DEFAULT_LIMIT,
               sort: str = DEFAULT_SORT) -> TaskPage:
    """The page of tasks matching ``filters`` that follows the cursor ``after`` (from a
    previous page's ``next_cursor``; None: the first page). Raises InvalidQuery for a
    bad sort, limit or cursor."""
    column, descending = _sort(sort)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}", "limit")
    query = _filtered(select(tasks), filters)
    if after is not None:
        query = query.where(_after(column, descending, *_decode(after, sort, column)))
    order = column.desc() if descending else column.asc()
    tie = tasks.c.task_id.desc() if descending else tasks.c.task_id.asc()
    if column.nullable:  # unset times and names last, either way
        order = order.nulls_last()
    query = query.order_by(order, tie).limit(limit + 1)
    rows = store.read_now("list tasks", lambda conn: _records(conn, query))
    more = len(rows) > limit
    items = rows[:limit]
    cursor = _encode(sort, getattr(items[-1], column.name), items[-1].task_id) if more else None
    return TaskPage(items, cursor, sort)


def task_detail(store: ResultStore, task_id: str) -> TaskRecord | None:
    """The task's row, or None when the store has never heard of it."""
    return store.get(task_id)


def children_of(store: ResultStore, task_id: str) -> list[str]:
    """Ids of the tasks ``task_id`` started (its callbacks, a chain's next link)."""
    return store.children(task_id)


def state_counts(store: ResultStore, filters: TaskFilters = TaskFilters()) -> dict[str, int]:
    """How many tasks are in each state (every state present, 0 included)."""
    query = _filtered(select(tasks.c.state, func.count()).group_by(tasks.c.state), filters)
    found: dict[str, int] = store.read_now(
        "count tasks", lambda conn: {s: n for s, n in conn.execute(query).all()})
    return {state: int(found.get(state, 0)) for state in ALL_STATES}


def _records(conn: Connection, query: Select[Any]) -> list[TaskRecord]:
    return [TaskRecord(**{name: row[name] for name in RECORD_FIELDS})
            for row in conn.execute(query).mappings()]


def _filtered(query: Select[Any], filters: TaskFilters) -> Select[Any]:
    if filters.states:
        query = query.where(tasks.c.state.in_(filters.states))
    for name in EXACT:
        value = getattr(filters, name)
        if value is not None:
            query = query.where(tasks.c[name] == value)
    if filters.worker is not None:
        query = query.where(_worker(filters.worker))
    bounds = ((tasks.c.received_at, filters.received_after, filters.received_before),
              (tasks.c.finished_at, filters.finished_after, filters.finished_before))
    for column, start, end in bounds:
        if start is not None:
            query = query.where(column >= start)
        if end is not None:
            query = query.where(column < end)
    if filters.search:
        query = query.where(_search(filters.search))
    return query


def _worker(name: str) -> ColumnElement[bool]:
    """The worker process ``name`` (``node:pid``, as rows name it) or any process of the
    node ``name`` (``celery@host``)."""
    return or_(tasks.c.worker == name, tasks.c.worker.like(_escaped(name) + ":%", escape="\\"))


def _escaped(term: str) -> str:
    """``term`` with LIKE's wildcards taken literally (escape character: backslash)."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search(term: str) -> ColumnElement[bool]:
    """The term anywhere in the searched columns (case-insensitive), or the exact id."""
    pattern = "%" + _escaped(term) + "%"
    found = [cast(c, String).ilike(pattern, escape="\\") for c in SEARCHED]
    return or_(tasks.c.task_id == term, *found)


def _sort(sort: str) -> tuple[Column[Any], bool]:
    descending = sort.startswith("-")
    column = SORTS.get(sort.removeprefix("-"))
    if column is None:
        raise InvalidQuery(f"sort must be one of {', '.join(sorted(SORTS))}, "
                           f"with '-' before it for descending", "sort")
    return column, descending


def _after(column: Column[Any], descending: bool, value: Any,
           task_id: str) -> ColumnElement[bool]:
    """The rows after (``value``, ``task_id``) in the order (``column`` NULLS LAST, id):
    a row comparison, which an index on (column, task_id) serves in either direction."""
    beyond = tasks.c.task_id < task_id if descending else tasks.c.task_id > task_id
    if value is None:
        return and_(column.is_(None), beyond)
    key = tuple_(column, tasks.c.task_id)
    further = key < (value, task_id) if descending else key > (value, task_id)
    return or_(further, column.is_(None)) if column.nullable else further


def _encode(sort: str, value: Any, task_id: str) -> str:
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    raw = json.dumps([sort, value, task_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, sort: str, column: Column[Any]) -> tuple[Any, str]:
    """(sort value, task id) of a cursor made by :func:`_encode` for the same sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, value, task_id = json.loads(raw)
        if not isinstance(task_id, str) or not (value is None or isinstance(value, str)):
            raise ValueError("malformed")
        if value is not None and column.name.endswith("_at"):
            value = dt.datetime.fromisoformat(value)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery("cursor is not one this API gave out", "cursor") from None
    if made_for != sort:
        raise InvalidQuery(f"cursor was made for sort {made_for!r}, not {sort!r}: "
                           f"start again without it", "cursor")
    return value, task_id


# -- queues ---------------------------------------------------------------------


@dataclass(frozen=True)
class QueueInfo:
    """One route's queues now: ``unacked`` None where the broker cannot tell (AMQP)."""

    name: str
    ready: int
    unacked: int | None
    consumers: int
    dead_letters: int
    sources: list[str] = field(default_factory=list)
    """Why the route is listed: ``default``, ``task_queues``, ``worker``."""


def known_routes(conf: Settings, workers: Sequence[WorkerRecord]) -> dict[str, list[str]]:
    """Every route hutch knows of, each with where it was learnt: the default queue,
    ``task_queues``, and the queues the workers in ``hutch_workers`` consume."""
    routes: dict[str, list[str]] = {conf.task_default_queue: ["default"]}
    for name in conf.task_queues:
        routes.setdefault(name, []).append("task_queues")
    for worker in workers:
        for name in worker.queues:
            sources = routes.setdefault(name, [])
            if "worker" not in sources:
                sources.append("worker")
    return dict(sorted(routes.items()))


def queue_infos(admin: Admin, routes: dict[str, list[str]]) -> list[QueueInfo]:
    """Depth, consumers and dead letters of each route, asked of the broker now."""
    out = []
    for name, sources in routes.items():
        stats = admin.queue_stats(name)
        out.append(QueueInfo(name, stats.ready, stats.unacked, stats.consumers,
                             admin.dead_letter_count(name), sources))
    return out
