"""The PENDING rows a producer writes for the messages it sent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..serialization import encode_args_for_row
from .records import PENDING, StateChange

if TYPE_CHECKING:
    from ..messages import TaskMessage


def pending_changes(messages: Sequence[TaskMessage]) -> list[StateChange]:
    """The PENDING rows a client writes for what it just sent (none for ignore_result)."""
    now = dt.datetime.now(dt.timezone.utc)
    return [pending_change(m, now) for m in messages if not m.ignore_result]


def pending_change(m: TaskMessage, now: dt.datetime) -> StateChange:
    """The row that says ``m`` is queued (its id, name, arguments and lineage)."""
    return StateChange(
        task_id=m.id, state=PENDING, name=m.task, args=encode_args_for_row(list(m.args)),
        kwargs=encode_args_for_row(m.kwargs), queue=m.queue, retries=m.retries,
        parent_id=m.parent_id, root_id=m.root_id, group_id=m.group_id, eta=m.eta,
        expires=m.expires, schedule_name=m.schedule_name, created_at=now)
