"""SQL for ``hutch_groups`` and ``hutch_group_done``: storing groups and counting chords.

A chord completes by an atomic count, in the transaction that records a header
task's outcome: the task is inserted into ``hutch_group_done`` (its primary key
makes a second count of the same task a no-op, so a redelivered outcome never
counts twice), then ``UPDATE hutch_groups SET completed = completed + n`` takes
the group row's lock. Writers of the same group queue on that lock (PostgreSQL;
SQLite serialises every writer), so exactly one transaction sees the count
reach the group's size, or a chord's first failure, and it alone moves the
group's ``state`` on from ``OPEN``. docs/dba.md describes the columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .models import group_done, groups
from .records import SUCCESS

OPEN, COMPLETE, FAILED = "OPEN", "COMPLETE", "FAILED"
"""A chord's ``state``; plain groups keep NULL (their members' rows tell their progress)."""

CHUNK = 500


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


@dataclass(frozen=True)
class Done:
    """A chord header task reached a final state (counted at most once per group)."""

    group_id: str
    task_id: str
    state: str
    reason: str = ""
    """For a failure: which task failed and how, for the chord's ChordError."""


@dataclass(frozen=True)
class Transition:
    """A chord this transaction completed (``COMPLETE``) or failed (``FAILED``)."""

    state: str
    group: GroupRecord
    failed: Done | None = None


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def insert_groups(conn: Connection, rows: Sequence[Any], now: dt.datetime) -> None:
    """Insert new groups (plan.GroupRow); an id already stored is left as it is, so a
    redelivered parent that expands the same frozen workflow again changes nothing."""
    values = [{"group_id": r.group_id, "parent_id": r.parent_id, "root_id": r.root_id,
               "member_ids": list(r.member_ids), "size": len(r.member_ids), "body": r.body,
               "body_id": r.body_id, "state": OPEN if r.body is not None else None,
               "created_at": now} for r in rows]
    if values:
        statement = _insert(conn)(groups).on_conflict_do_nothing(index_elements=["group_id"])
        conn.execute(statement, values)


def save_group(conn: Connection, group_id: str, member_ids: list[str], now: dt.datetime) -> None:
    """``GroupResult.save()``: store (or replace) the member list of a group."""
    statement = _insert(conn)(groups).values(group_id=group_id, member_ids=member_ids,
                                             size=len(member_ids), created_at=now)
    conn.execute(statement.on_conflict_do_update(
        index_elements=["group_id"],
        set_={"member_ids": statement.excluded.member_ids, "size": statement.excluded.size}))


def read_groups(conn: Connection, group_ids: Iterable[str]) -> dict[str, GroupRecord]:
    ids = list(dict.fromkeys(group_ids))
    found: dict[str, GroupRecord] = {}
    for start in range(0, len(ids), CHUNK):
        query = select(groups).where(groups.c.group_id.in_(ids[start:start + CHUNK]))
        for row in conn.execute(query).mappings():
            found[row["group_id"]] = _record(row)
    return found


def count_done(conn: Connection, events: Sequence[Done], now: dt.datetime) -> list[Transition]:
    """Count header outcomes; return the chords that this transaction completed or failed.

    Groups are updated in id order, so concurrent transactions take their locks in
    the same order.
    """
    fresh = _first_counts(conn, events, now)
    by_group: dict[str, list[Done]] = {}
    for event in fresh:
        by_group.setdefault(event.group_id, []).append(event)
    transitions = []
    for group_id in sorted(by_group):
        done = by_group[group_id]
        failures = [e for e in done if e.state != SUCCESS]
        row = conn.execute(
            update(groups).where(groups.c.group_id == group_id)
            .values(completed=groups.c.completed + len(done),
                    failed=groups.c.failed + len(failures))
            .returning(*groups.c)).mappings().first()
        if row is None or row["state"] != OPEN:
            continue  # not a chord (or not stored), or already decided
        record = _record(row)
        if failures:
            transitions.append(_decide(conn, record, FAILED, now, failures[0]))
        elif record.completed >= record.size:
            transitions.append(_decide(conn, record, COMPLETE, now))
    return transitions


def _first_counts(conn: Connection, events: Sequence[Done], now: dt.datetime) -> list[Done]:
    """The events whose (group, task) was not counted before; inserts them."""
    unique = {(e.group_id, e.task_id): e for e in events}
    fresh: list[Done] = []
    keys = sorted(unique)
    for start in range(0, len(keys), CHUNK):
        part = [unique[k] for k in keys[start:start + CHUNK]]
        statement = (_insert(conn)(group_done)
                     .values([{"group_id": e.group_id, "task_id": e.task_id, "state": e.state,
                               "done_at": now} for e in part])
                     .on_conflict_do_nothing(index_elements=["group_id", "task_id"])
                     .returning(group_done.c.group_id, group_done.c.task_id))
        inserted = {(row[0], row[1]) for row in conn.execute(statement)}
        fresh.extend(e for e in part if (e.group_id, e.task_id) in inserted)
    return fresh


def _decide(conn: Connection, record: GroupRecord, state: str, now: dt.datetime,
            failed: Done | None = None) -> Transition:
    conn.execute(update(groups).where(groups.c.group_id == record.group_id)
                 .values(state=state, finished_at=now,
                         failed_task_id=failed.task_id if failed else None))
    return Transition(state, record, failed)


def _record(row: Any) -> GroupRecord:
    return GroupRecord(
        group_id=row["group_id"], member_ids=list(row["member_ids"] or []), size=row["size"],
        parent_id=row["parent_id"], root_id=row["root_id"], body=row["body"],
        body_id=row["body_id"], state=row["state"], completed=row["completed"],
        failed=row["failed"], failed_task_id=row["failed_task_id"],
        created_at=row["created_at"], finished_at=row["finished_at"])
