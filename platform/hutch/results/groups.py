"""SQL for ``hutch_groups``: storing groups and counting chords.

A chord is counted in the transaction that records its header tasks' outcomes:
an outcome counts only when its own write makes the task final (the batch's
upsert returns the rows it changed; a redelivered outcome never counts twice),
on PostgreSQL in the upsert's own statement, and the count goes into the
recording worker's own row of ``hutch_group_counts`` (one per worker process and
chord), so workers finishing header tasks at the same moment never wait for
each other. After that commit the worker adds the
counters up and, when they reach the chord's size, claims it with
``UPDATE hutch_groups SET state = 'COMPLETE' WHERE state = 'OPEN'``: the row
lock lets exactly one claim win, and whichever worker committed the last count
sees the full total, so the body is sent once. A failure decides the chord
(``FAILED``) in the counting transaction itself. docs/dba.md describes the
tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Insert,
    Select,
    String,
    Table,
    any_,
    bindparam,
    cast,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from .models import IN_CHUNK, group_counts, groups, rows_by_ids, tasks
from .records import FAILURE, REVOKED, SUCCESS

OPEN, COMPLETE, FAILED = "OPEN", "COMPLETE", "FAILED"
"""A chord's ``state``; plain groups keep NULL (their members' rows tell their progress)."""


@dataclass(frozen=True)
class GroupRecord:
    """A ``hutch_groups`` row as read back."""

    group_id: str
    member_ids: list[str]
    size: int
    parent_id: str | None = None
    root_id: str | None = None
    body: dict[str, Any] | None = None
    body_id: str | None = None
    state: str | None = None
    completed: int = 0
    failed: int = 0
    failed_task_id: str | None = None
    created_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    body_sent_at: dt.datetime | None = None
    """When the body (or, for a failed chord, its errbacks) was confirmed published."""
    notify: str | None = None
    """The notice key of the client that sent the chord, which its body carries on."""


@dataclass(frozen=True)
class Done:
    """A chord header task reached a final state (counted at most once per group)."""

    group_id: str
    task_id: str
    state: str
    reason: str = ""
    """For a failure: which task failed and how, for the chord's ChordError."""
    recheck: bool = False
    """From a redelivered header task that had finished: also send the body again if
    the worker that completed the chord died before it was published."""


@dataclass(frozen=True)
class Transition:
    """A chord this transaction completed (``COMPLETE``) or failed (``FAILED``)."""

    state: str
    group: GroupRecord
    failed: Done | None = None


def insert_groups(conn: Connection, rows: Sequence[Any], now: dt.datetime) -> None:
    """Insert new groups (plan.GroupRow); an id already stored is left as it is, so a
    redelivered parent that expands the same frozen workflow again changes nothing."""
    values = [{"group_id": r.group_id, "parent_id": r.parent_id, "root_id": r.root_id,
               "member_ids": list(r.member_ids), "size": len(r.member_ids), "body": r.body,
               "body_id": r.body_id, "state": _first_state(r), "created_at": now,
               "notify": r.notify,
               **_decided_at_start(r, now)} for r in rows]
    if values:
        conn.execute(GROUP_STATEMENTS[conn.dialect.name][0], values)


def _decided_at_start(row: Any, now: dt.datetime) -> dict[str, Any]:
    """For a chord failed before it started (workflows/unreached.py): decided now, by
    the task that failed, with nothing to send (its body's rows are FAILURE already)."""
    failed = row.failed_task_id
    return {"failed_task_id": failed, "finished_at": now if failed else None,
            "body_sent_at": now if failed else None}


def _first_state(row: Any) -> str | None:
    if row.body is None:
        return None  # a plain group is not counted
    if row.failed_task_id:
        return FAILED  # a chord that cannot start: the step before it failed
    return OPEN if row.member_ids else COMPLETE  # an empty chord's body is sent at once


def _group_statements(insert: Callable[[Table], Any]) -> tuple[Insert, Insert]:
    """A dialect's insert of new groups and ``GroupResult.save()``'s upsert."""
    new: Insert = insert(groups).on_conflict_do_nothing(index_elements=["group_id"])
    saved = insert(groups)
    save: Insert = saved.on_conflict_do_update(
        index_elements=["group_id"],
        set_={"member_ids": saved.excluded.member_ids, "size": saved.excluded.size})
    return new, save


GROUP_STATEMENTS = {"postgresql": _group_statements(postgresql.insert),
                    "sqlite": _group_statements(sqlite.insert)}
"""By dialect, the two group writes, built once (building them with the expression
language on each call cost more than running them)."""


def save_group(conn: Connection, group_id: str, member_ids: list[str], now: dt.datetime) -> None:
    """``GroupResult.save()``: store (or replace) the member list of a group."""
    conn.execute(GROUP_STATEMENTS[conn.dialect.name][1], {
        "group_id": group_id, "member_ids": member_ids, "size": len(member_ids),
        "created_at": now})


def read_groups(conn: Connection, group_ids: Iterable[str]) -> dict[str, GroupRecord]:
    return {row["group_id"]: _record(row)
            for row in rows_by_ids(conn, groups.c.group_id, group_ids)}


def header_outcomes(conn: Connection, task_ids: list[str]) -> dict[str, Any]:
    """State and result columns of the header tasks (only those: a chord of thousands
    reads them once, in the transaction that completes it)."""
    columns = (tasks.c.task_id, tasks.c.state, tasks.c.result, tasks.c.result_encoded,
               tasks.c.result_content_type)
    if conn.dialect.name == "postgresql":  # one array parameter instead of thousands
        query = select(*columns).where(tasks.c.task_id == any_(cast(bindparam("ids"),
                                                                    ARRAY(String))))
        return {row.task_id: row for row in conn.execute(query, {"ids": task_ids})}
    found: dict[str, Any] = {}
    for start in range(0, len(task_ids), IN_CHUNK):
        query = select(*columns).where(tasks.c.task_id.in_(task_ids[start:start + IN_CHUNK]))
        found.update((row.task_id, row) for row in conn.execute(query))
    return found


@dataclass
class Counts:
    """Chord header outcomes to count in a batch's own write (``ResultStore.write``).

    The write fills ``written``: the ids among ``events`` whose row the batch's
    upsert changed (an outcome that lost to the precedence rule, such as a
    redelivered task's written before, is left out), and adds them to the
    ``shard`` counter rows in the same transaction, on PostgreSQL in the same
    statement (:func:`counting_upsert`). An outcome counts when its own write made
    the task final, so never twice."""

    events: Sequence[Done]
    shard: str
    written: set[str] = field(default_factory=set)

    def parameters(self) -> dict[str, Any]:
        """The events as the arrays :func:`counting_upsert` reads."""
        return {"tasks": [e.task_id for e in self.events],
                "groups": [e.group_id for e in self.events],
                "states": [e.state for e in self.events], "shard": self.shard}


def counting_upsert(upsert: Insert) -> Select[Any]:
    """PostgreSQL: the batch ``upsert`` and the count of the header outcomes it
    wrote, one statement (one round trip): the upsert returns the ids it changed,
    those among the events (``:tasks``, ``:groups``, ``:states``) are added to this
    worker's counter rows, and their ids are what the statement returns."""
    up = upsert.returning(tasks.c.task_id).cte("up")
    array = ARRAY(String)
    ev = func.unnest(cast(bindparam("tasks"), array), cast(bindparam("groups"), array),
                     cast(bindparam("states"), array)).table_valued(
        "task_id", "group_id", "state").render_derived(name="ev")
    mine = select(ev.c.task_id, ev.c.group_id, ev.c.state).join(
        up, up.c.task_id == ev.c.task_id).cte("mine")
    per_group = select(mine.c.group_id, bindparam("shard", type_=String), func.count(),
                       func.count().filter(mine.c.state != SUCCESS)).group_by(mine.c.group_id)
    add = postgresql.insert(group_counts).from_select(
        ["group_id", "shard", "completed", "failed"], per_group)
    add = add.on_conflict_do_update(
        index_elements=[group_counts.c.group_id, group_counts.c.shard],
        set_={"completed": group_counts.c.completed + add.excluded.completed,
              "failed": group_counts.c.failed + add.excluded.failed})
    return select(mine.c.task_id).add_cte(add.cte("counted"))


def add_written(conn: Connection, counts: Counts) -> None:
    """SQLite: add the outcomes the batch wrote (``counts.written``, tested before the
    upsert under the write lock) to this worker's counter rows."""
    done: dict[str, list[Done]] = {}
    for event in counts.events:
        if event.task_id in counts.written:
            done.setdefault(event.group_id, []).append(event)
    for group_id, events in sorted(done.items()):
        _add_counts(conn, group_id, counts.shard, len(events),
                    sum(e.state != SUCCESS for e in events))


def count_done(conn: Connection, events: Sequence[Done], written: set[str], shard: str,
               now: dt.datetime) -> list[Transition]:
    """Fail the chords that a failure among ``events`` decides; the outcomes in
    ``written`` were counted by the batch's write (:class:`Counts`). Completion is
    claimed afterwards (claim_complete).

    A failure whose write lost (the row was already FAILURE or REVOKED: a revoke
    marked it before any worker saw it, a hard time limit wrote it, or this
    transaction wrote it: the body of a failed inner chord) is counted here and
    still fails a chord that is open.
    """
    unique = list({(e.group_id, e.task_id): e for e in events}.values())
    stale = [e.task_id for e in unique if e.state != SUCCESS and e.task_id not in written]
    failed_before = _failed_rows(conn, stale) if stale else set()
    by_group: dict[str, list[Done]] = {}
    for event in unique:
        if event.task_id in written or event.task_id in failed_before:
            by_group.setdefault(event.group_id, []).append(event)
    transitions = []
    for group_id in sorted(by_group):
        done = by_group[group_id]
        failures = [e for e in done if e.state != SUCCESS]
        fresh = [e for e in done if e.task_id in written]
        if not fresh and not _is_open(conn, group_id):
            continue  # a stale failure of a chord decided already: nothing to count
        add = [e for e in done if e.task_id not in written]
        if add:
            _add_counts(conn, group_id, shard, len(add), sum(e.state != SUCCESS for e in add))
        if failures:
            decided = _decide(conn, group_id, FAILED, now, failures[0])
            if decided is not None:
                transitions.append(decided)
    return transitions


def _add_counts(conn: Connection, group_id: str, shard: str, done: int, failed: int) -> None:
    """Add to this worker's own counter row: no other worker writes it, so counting
    never waits on a lock other workers hold."""
    conn.execute(ADD_COUNTS, {"group_id": group_id, "shard": shard, "completed": done,
                              "failed": failed})


ADD_COUNTS = text("""
INSERT INTO hutch_group_counts AS c (group_id, shard, completed, failed)
VALUES (:group_id, :shard, :completed, :failed)
ON CONFLICT (group_id, shard)
DO UPDATE SET completed = c.completed + excluded.completed, failed = c.failed + excluded.failed
""")
"""Prepared once (the statements on the per-batch path are text: building them with
the expression language each time cost more than running them)."""

COMPLETE_CANDIDATES = text("""
SELECT g.group_id FROM hutch_groups g
JOIN (SELECT group_id, sum(completed) AS done, sum(failed) AS failed
      FROM hutch_group_counts WHERE group_id IN :ids GROUP BY group_id) t
  ON t.group_id = g.group_id
WHERE g.state = 'OPEN' AND t.failed = 0 AND t.done >= g.size
""").bindparams(bindparam("ids", expanding=True))


def claim_complete(conn: Connection, group_ids: Iterable[str],
                   now: dt.datetime) -> list[Transition]:
    """Chords among ``group_ids`` whose counters add up to their size, moved from OPEN
    to COMPLETE by this transaction (the UPDATE's row lock lets exactly one claim).

    Runs after the counting transaction committed. Of two workers committing the
    last header outcomes at the same moment, the one whose commit came second
    reads both counts here, so at least one of them claims the chord."""
    transitions = []
    for group_id in sorted(set(group_ids)):
        done, failed = _totals(conn, group_id)
        row = conn.execute(select(groups.c.state, groups.c.size)
                           .where(groups.c.group_id == group_id)).first()
        if row is None or row.state != OPEN or failed or done < row.size:
            continue
        decided = _decide(conn, group_id, COMPLETE, now)
        if decided is not None:
            transitions.append(decided)
    return transitions


def complete_candidates(conn: Connection, group_ids: Iterable[str]) -> set[str]:
    """Of these chords, the OPEN ones whose counters add up to their size, without
    failures: what :func:`claim_complete` would claim (one read, no locks)."""
    return set(conn.execute(COMPLETE_CANDIDATES, {"ids": sorted(set(group_ids))}).scalars())


def _totals(conn: Connection, group_id: str) -> tuple[int, int]:
    row = conn.execute(select(func.coalesce(func.sum(group_counts.c.completed), 0),
                              func.coalesce(func.sum(group_counts.c.failed), 0))
                       .where(group_counts.c.group_id == group_id)).one()
    return int(row[0]), int(row[1])


def _failed_rows(conn: Connection, task_ids: list[str]) -> set[str]:
    query = select(tasks.c.task_id).where(tasks.c.task_id.in_(task_ids),
                                          tasks.c.state.in_([FAILURE, REVOKED]))
    return set(conn.execute(query).scalars())


def _is_open(conn: Connection, group_id: str) -> bool:
    query = select(groups.c.state).where(groups.c.group_id == group_id).with_for_update()
    return conn.execute(query).scalar() == OPEN


def _decide(conn: Connection, group_id: str, state: str, now: dt.datetime,
            failed: Done | None = None) -> Transition | None:
    """Move a chord from OPEN to ``state`` (None if it was not OPEN any more); the row
    keeps the counts as they were when it was decided."""
    done, failures = _totals(conn, group_id)
    row = conn.execute(update(groups)
                       .where(groups.c.group_id == group_id, groups.c.state == OPEN)
                       .values(state=state, finished_at=now, completed=done, failed=failures,
                               failed_task_id=failed.task_id if failed else None)
                       .returning(*groups.c)).mappings().first()
    return Transition(state, _record(row), failed) if row is not None else None


def mark_sent(conn: Connection, group_ids: Sequence[str], now: dt.datetime) -> None:
    """Record that these chords' bodies (or errbacks) were confirmed published."""
    conn.execute(update(groups).where(groups.c.group_id.in_(list(group_ids)),
                                      groups.c.body_sent_at.is_(None))
                 .values(body_sent_at=now))


def _record(row: Any) -> GroupRecord:
    return GroupRecord(
        group_id=row["group_id"], member_ids=list(row["member_ids"] or []), size=row["size"],
        parent_id=row["parent_id"], root_id=row["root_id"], body=row["body"],
        body_id=row["body_id"], state=row["state"], completed=row["completed"],
        failed=row["failed"], failed_task_id=row["failed_task_id"],
        created_at=row["created_at"], finished_at=row["finished_at"],
        body_sent_at=row["body_sent_at"], notify=row["notify"])
