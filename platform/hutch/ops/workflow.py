"""A task's place in its workflow, for the dashboard's task page: its parent (a task,
or the chord whose body it is), its children, the group or chord it belongs to with
the other members, and the groups and chords it started. Read from ``hutch_tasks``
and ``hutch_groups`` on their indexes (parent, group, body ids), each list cut at
:data:`LISTED` so a workflow of a million tasks costs what one of a hundred does.
``hutch result ID --tree`` draws the whole tree (hutch.ops.tree)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from ..results.groups import GroupRecord
from ..results.models import groups, tasks
from ..results.records import TaskRecord
from ..results.store import ResultStore

LISTED = 100
"""At most this many children, members or started groups are listed (the count is exact)."""


@dataclass(frozen=True)
class Link:
    """A task named in the workflow: its id and its row (None: no row yet)."""

    task_id: str
    record: TaskRecord | None


@dataclass(frozen=True)
class Members:
    """A group or chord with (the first :data:`LISTED` of) its members."""

    group: GroupRecord
    members: list[Link]

    @property
    def is_chord(self) -> bool:
        return self.group.body is not None or self.group.body_id is not None


@dataclass(frozen=True)
class Workflow:
    """Where a task sits: ``parent`` (a task) or ``parent_group`` (its chord, for a
    chord body), ``children`` of ``child_count``, ``group`` it is a member of,
    ``started`` groups and chords whose parent it is."""

    parent: Link | None
    parent_group: Members | None
    children: list[Link]
    child_count: int
    group: Members | None
    started: list[Members] = field(default_factory=list)


def workflow(store: ResultStore, record: TaskRecord) -> Workflow:
    """The workflow around ``record``."""
    parent = parent_group = group = None
    if record.parent_id:
        found = store.get_groups([record.parent_id]).get(record.parent_id)
        if found is not None:
            parent_group = _members(store, found)
        else:
            parent = Link(record.parent_id, store.get(record.parent_id))
    if record.group_id:
        found = store.get_groups([record.group_id]).get(record.group_id)
        if found is not None:
            group = _members(store, found)
    child_ids, count = _children(store, record.task_id)
    rows = store.get_many(child_ids)
    started = store.get_groups(_started(store, record.task_id))
    return Workflow(parent, parent_group, [Link(i, rows.get(i)) for i in child_ids], count,
                    group, [_members(store, g) for g in started.values()])


def _members(store: ResultStore, group: GroupRecord) -> Members:
    ids = group.member_ids[:LISTED]
    rows = store.get_many(ids)
    return Members(group, [Link(i, rows.get(i)) for i in ids])


def _children(store: ResultStore, task_id: str) -> tuple[list[str], int]:
    """The first :data:`LISTED` children's ids (oldest first) and how many there are."""
    listed = (select(tasks.c.task_id).where(tasks.c.parent_id == task_id)
              .order_by(tasks.c.created_at, tasks.c.task_id).limit(LISTED))
    counted = select(func.count()).where(tasks.c.parent_id == task_id)
    return store.read_now("read a task's children", lambda conn: (
        list(conn.execute(listed).scalars()), int(conn.execute(counted).scalar() or 0)))


def _started(store: ResultStore, task_id: str) -> list[str]:
    """Ids of the groups and chords whose parent is ``task_id``."""
    query = (select(groups.c.group_id).where(groups.c.parent_id == task_id)
             .order_by(groups.c.created_at).limit(LISTED))
    return store.read_now("read the groups a task started",
                          lambda conn: list(conn.execute(query).scalars()))
