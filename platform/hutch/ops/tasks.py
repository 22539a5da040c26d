"""Tasks as the dashboard and its JSON API read them (issue #14).

Read-only queries over ``hutch_tasks`` (through the result store's engine and its
one-line errors); no HTTP here, so the pages and the API share them (the queues:
hutch.ops.queues).

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
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Select,
    String,
    cast,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from ..errors import InvalidQuery
from ..results.models import search_text, task_attempts, tasks
from ..results.records import ALL_STATES, TaskRecord
from ..results.store import RECORD_FIELDS, ResultStore

MAX_LIMIT = 500
"""The largest page; a bigger ``limit`` is refused rather than quietly cut."""
DEFAULT_LIMIT = 50
SEARCH_WINDOW = 5000
"""Rows a text search reads in order before it turns to its index (see :class:`Found`)."""

SORTS: dict[str, tuple[Column[Any], ...]] = {
    "created": (tasks.c.created_at,),
    "received": (tasks.c.received_at,),
    "started": (tasks.c.started_at,),
    "finished": (tasks.c.finished_at,),
    "name": (tasks.c.name, tasks.c.created_at),
    "state": (tasks.c.state, tasks.c.created_at),
}
"""Sortable columns by their API name (``-created``: newest first, the default), each
with the columns it is ordered by before the task id: a name or state sorts its tasks
by creation. Each key is the prefix of one index of ``hutch_tasks`` (migration 0010)."""
DEFAULT_SORT = "-created"

SEARCHED = (tasks.c.args, tasks.c.kwargs, tasks.c.result, tasks.c.exception_type,
            tasks.c.exception_message)
"""What ``search`` looks in: on PostgreSQL one ILIKE over their text joined
(``search_text``, served by a trigram index), elsewhere a LIKE over each (a scan)."""

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
    key, descending = _sort(sort)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}", "limit")
    start = None if after is None else _decode(after, sort, key)
    query = _filtered(select(tasks), replace(filters, search=None), store.dialect)
    found = Found(filters.search, store.dialect)
    rows = store.read_now("list tasks", lambda conn: _page(
        conn, query, found, key, descending, start, limit + 1))
    more = len(rows) > limit
    items = rows[:limit]
    last = items[-1] if more else None
    cursor = None if last is None else _encode(
        sort, [getattr(last, column.name) for column in key], last.task_id)
    return TaskPage(items, cursor, sort)


def _page(conn: Connection, query: Select[Any], found: Found, key: tuple[Column[Any], ...],
          descending: bool, start: tuple[list[Any], str] | None,
          wanted: int) -> list[TaskRecord]:
    """``wanted`` rows of ``query`` that the search ``found`` keeps, after ``start`` in
    the order (``key``..., task id), rows whose first key column is NULL last either
    way. Read in two parts, each one range of the index on (key..., task_id): the
    rows with a value, then (nullable columns) those without, ordered by the rest of
    the key. One query with NULLS LAST could not use that index when descending."""
    first = key[0]
    rows: list[TaskRecord] = []
    if start is None or start[0][0] is not None:
        valued = query.where(first.is_not(None)) if first.nullable else query
        if start is not None:
            valued = valued.where(_beyond(key, start[0], start[1], descending))
        rows = found.first(conn, valued, key, descending, wanted)
    if first.nullable and len(rows) < wanted:
        unset = query.where(first.is_(None))
        if start is not None and start[0][0] is None:
            unset = unset.where(_beyond(key[1:], start[0][1:], start[1], descending))
        rows += found.first(conn, unset, key[1:], descending, wanted - len(rows))
    return rows


@dataclass(frozen=True)
class Found:
    """The text search of one list request (``term`` None: no search).

    A page of a search is read in at most two goes: first the newest
    :data:`SEARCH_WINDOW` rows in the page's order (one index range), searched
    row by row; only when they hold less than a page, the whole table through the
    search's own index (PostgreSQL: trigram) or a scan (SQLite), sorted after. A
    common term (a frequent exception) is answered by the first go, whose cost does
    not grow with the table; a rare one by the index, whose cost grows with the
    number of matches; only a term matching many rows but few recent ones pays the
    sort of all its matches."""

    term: str | None
    dialect: str

    def first(self, conn: Connection, query: Select[Any], key: tuple[Column[Any], ...],
              descending: bool, wanted: int) -> list[TaskRecord]:
        """The first ``wanted`` rows of ``query`` (ordered by ``key``, task id) it keeps."""
        if self.term is None:
            return _records(conn, _ordered(query, key, descending).limit(wanted))
        window = _ordered(query, key, descending).limit(SEARCH_WINDOW).subquery()
        recent = select(window).where(_search(self.term, self.dialect, window.c))
        in_window = [window.c[column.name] for column in key]
        rows = _records(conn, _ordered(recent, in_window, descending, window.c.task_id)
                        .limit(wanted))
        if len(rows) == wanted:
            return rows
        query = query.where(_search(self.term, self.dialect, tasks.c))
        return _records(conn, _ordered(query, key, descending).limit(wanted))


def _ordered(query: Select[Any], key: Sequence[ColumnElement[Any]], descending: bool,
             tie: ColumnElement[Any] = tasks.c.task_id) -> Select[Any]:
    columns = (*key, tie)
    return query.order_by(*(c.desc() if descending else c.asc() for c in columns))


def _beyond(key: tuple[Column[Any], ...], values: list[Any], task_id: str,
            descending: bool) -> ColumnElement[bool]:
    """The rows after (``values``..., ``task_id``) in the order (``key``..., id): a row
    comparison, which the index on (key..., task_id) serves in either direction."""
    if not key:
        return tasks.c.task_id < task_id if descending else tasks.c.task_id > task_id
    row, mark = tuple_(*key, tasks.c.task_id), tuple_(*values, task_id)
    return row < mark if descending else row > mark


def task_detail(store: ResultStore, task_id: str) -> TaskRecord | None:
    """The task's row, or None when the store has never heard of it."""
    return store.get(task_id)


@dataclass(frozen=True)
class Attempt:
    """An attempt of a task that failed and was retried (``hutch_task_attempts``):
    ``attempt`` is its ``retries`` (0: the first run); ``eta``: when the next was due."""

    attempt: int
    worker: str | None
    started_at: dt.datetime | None
    retried_at: dt.datetime
    eta: dt.datetime | None
    exception_type: str | None
    exception_message: str | None


def attempts_of(store: ResultStore, task_id: str) -> list[Attempt]:
    """The task's retried attempts, first first (``hutch_tasks`` keeps only the last's times)."""
    query = (select(*[c for c in task_attempts.columns if c.name != "task_id"])
             .where(task_attempts.c.task_id == task_id).order_by(task_attempts.c.attempt))
    return store.read_now("read task attempts", lambda conn: [
        Attempt(**row) for row in conn.execute(query).mappings()])


def children_of(store: ResultStore, task_id: str) -> list[str]:
    """Ids of the tasks ``task_id`` started (its callbacks, a chain's next link)."""
    return store.children(task_id)


def state_counts(store: ResultStore, filters: TaskFilters = TaskFilters()) -> dict[str, int]:
    """How many tasks are in each state (every state present, 0 included)."""
    query = _filtered(select(tasks.c.state, func.count()).group_by(tasks.c.state), filters,
                      store.dialect)
    found: dict[str, int] = store.read_now(
        "count tasks", lambda conn: {s: n for s, n in conn.execute(query).all()})
    return {state: int(found.get(state, 0)) for state in ALL_STATES}


def _records(conn: Connection, query: Select[Any]) -> list[TaskRecord]:
    return [TaskRecord(**{name: row[name] for name in RECORD_FIELDS})
            for row in conn.execute(query).mappings()]


def _filtered(query: Select[Any], filters: TaskFilters, dialect: str) -> Select[Any]:
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
        query = query.where(_search(filters.search, dialect, tasks.c))
    return query


def _worker(name: str) -> ColumnElement[bool]:
    """The worker process ``name`` (``node:pid``, as rows name it) or any process of the
    node ``name`` (``celery@host``). A process is one comparison; a node's ``LIKE``
    reads the worker index too on PostgreSQL, where ``worker`` is byte-wise (a B-tree
    serves ``LIKE`` only under the C collation; migration 0014)."""
    node, _, pid = name.rpartition(":")
    if node and pid.isdigit():
        return tasks.c.worker == name
    return or_(tasks.c.worker == name, tasks.c.worker.like(_escaped(name) + ":%", escape="\\"))


def _escaped(term: str) -> str:
    """``term`` with LIKE's wildcards taken literally (escape character: backslash)."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search(term: str, dialect: str, columns: ReadOnlyColumnCollection[str, Any]
            ) -> ColumnElement[bool]:
    """The term anywhere in the searched ``columns`` (of hutch_tasks or a subquery of
    it; case-insensitive), or the exact id."""
    pattern = "%" + _escaped(term) + "%"
    if dialect == "postgresql":  # names the columns unqualified: either source works
        found = [search_text.ilike(pattern, escape="\\")]
    else:
        found = [cast(columns[c.name], String).ilike(pattern, escape="\\") for c in SEARCHED]
    return or_(columns.task_id == term, *found)


def _sort(sort: str) -> tuple[tuple[Column[Any], ...], bool]:
    descending = sort.startswith("-")
    key = SORTS.get(sort.removeprefix("-"))
    if key is None:
        raise InvalidQuery(f"sort must be one of {', '.join(sorted(SORTS))}, "
                           f"with '-' before it for descending", "sort")
    return key, descending


def _encode(sort: str, values: list[Any], task_id: str) -> str:
    shown = [v.isoformat() if isinstance(v, dt.datetime) else v for v in values]
    raw = json.dumps([sort, *shown, task_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, sort: str, key: tuple[Column[Any], ...]) -> tuple[list[Any], str]:
    """(sort key values, task id) of a cursor made by :func:`_encode` for the same sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, *values, task_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery("cursor is not one this API gave out", "cursor") from None
    if made_for != sort:
        raise InvalidQuery(f"cursor was made for sort {made_for!r}, not {sort!r}: "
                           f"start again without it", "cursor")
    try:
        return _key_values(values, key), _text(task_id)
    except (ValueError, TypeError):
        raise InvalidQuery("cursor is not one this API gave out", "cursor") from None


def _key_values(values: list[Any], key: tuple[Column[Any], ...]) -> list[Any]:
    """The cursor's sort values, times parsed; only the first may be NULL."""
    out: list[Any] = []
    for position, (value, column) in enumerate(zip(values, key, strict=True)):
        if value is None and position == 0 and column.nullable:
            out.append(None)
        elif column.name.endswith("_at"):
            out.append(dt.datetime.fromisoformat(_text(value)))
        else:
            out.append(_text(value))
    return out


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("malformed")
    return value
