"""The PENDING rows a producer writes for the messages it sent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..messages import row_values
from .records import PENDING, StateChange

if TYPE_CHECKING:
    from ..messages import TaskMessage


def pending_changes(messages: Sequence[TaskMessage]) -> list[StateChange]:
    """The PENDING rows a client writes for what it just sent (none for ignore_result)."""
    now = dt.datetime.now(dt.timezone.utc)
    return [pending_change(m, now) for m in messages if not m.ignore_result]


def pending_change(m: TaskMessage, now: dt.datetime) -> StateChange:
    """The row that says ``m`` is queued (its id, name, arguments and lineage)."""
    return StateChange(state=PENDING, created_at=now, **row_values(m))
