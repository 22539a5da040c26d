"""The rows of workflow steps that will never run: the rest of a chain after a failed
step, the body of a chord whose header failed.

Nothing of what such a step would have started runs, so each of those tasks gets
its FAILURE row at once, in the transaction that records the failure: with the
exception of the step that failed (as Celery marks the rest of a chain) or the
chord's ChordError, and with the ``parent_id``/``root_id``/``group_id`` it would
have had. ``get()`` on any of their ids then returns at once, in any process, and
``hutch result --tree`` and DBAs see the whole workflow. A chord among them gets
its ``hutch_groups`` row as ``FAILED``; a plain group its usual row.

Only steps with an id of their own are followed: every step of a chain, group or
chord is frozen before it is sent, while a ``link=`` callback the caller did not
freeze has no id to mark (Celery skips those too). Pure: the caller writes what
this returns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace

from ..messages import SignatureDict
from ..results.pending_rows import pending_change
from ..results.records import FAILURE, StateChange, TaskRecord
from .canvas import Signature, chain, chord, chunks
from .plan import GroupRow, Plan, Planner

OUTCOME_FIELDS = tuple(f.name for f in fields(StateChange)
                       if f.name.startswith("exception") or f.name in ("traceback", "finished_at"))
"""What an unreached task's row copies from the failure that ended its workflow."""


@dataclass
class Unreached:
    """Rows to write with the failure: the tasks' FAILURE rows and their group rows."""

    rows: list[StateChange] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)


def unreached(planner: Planner, steps: Iterable[Signature | SignatureDict], parent_id: str,
              root_id: str, failure: StateChange) -> Unreached:
    """Everything ``steps`` (started by ``parent_id``, which failed) would have started,
    with ``failure``'s outcome. Raises what planning raises (HutchError) for a step
    that could not have been sent either."""
    plan = Plan()
    todo = [(step, parent_id) for step in steps]
    while todo:
        data, parent = todo.pop(0)
        sig = Signature.from_dict(data)
        if not is_frozen(sig):
            continue
        part = planner.plan(sig, (), parent_id=parent, root_id=root_id)
        plan.extend(part)
        todo.extend((link, m.id) for m in part.messages for link in m.link)
        todo.extend((g.body, g.group_id) for g in part.groups if g.body is not None and g.member_ids)
    decided = [replace(g, failed_task_id=failure.task_id) if g.body is not None else g
               for g in plan.groups]
    now = dt.datetime.now(dt.timezone.utc)
    rows = [replace(pending_change(m, now), eta=None) for m in plan.messages]
    return Unreached(failed_like(rows, failure), decided)


def failed_like(rows: Iterable[StateChange], failure: StateChange) -> list[StateChange]:
    """``rows`` as FAILURE rows carrying ``failure``'s exception and finish time."""
    outcome = {name: getattr(failure, name) for name in OUTCOME_FIELDS}
    return [replace(row, state=FAILURE, **outcome) for row in rows]


def failure_of(record: TaskRecord) -> StateChange:
    """A stored FAILURE as the outcome to copy (the failure was written elsewhere)."""
    return StateChange(task_id=record.task_id, state=FAILURE,
                       **{name: getattr(record, name) for name in OUTCOME_FIELDS
                          if hasattr(record, name)})


def is_frozen(sig: Signature) -> bool:
    """Whether ``sig`` has its ids (a step of a workflow does; a bare callback need not)."""
    if isinstance(sig, chain):
        return bool(sig.tasks) and is_frozen(sig.tasks[0])
    if isinstance(sig, chord):
        return is_frozen(sig.header)
    if isinstance(sig, chunks):
        return False
    return "task_id" in sig.options

