"""Which exception ``get()`` raises for a chord that failed: its failed header task's.

The rows of a failed chord's body say ``hutch.errors.ChordError`` naming the
failed header task, for DBAs, errbacks and the tree view. A Celery user's
``get()`` raises the header task's own exception instead (Celery re-raises the
failed parent's error first), so that is what ``get()`` raises here, whatever the
body is: from the ChordError row, the lineage leads back (through ``parent_id``,
to the header group whose ``hutch_groups.failed_task_id`` names the task that
decided it) to the failure that caused it. A chord that failed because an inner
chord failed leads on to that chord's failed task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ChordError
from .records import FAILURE, REVOKED, TaskRecord

if TYPE_CHECKING:
    from .store import ResultStore

CHORD_ERROR = f"{ChordError.__module__}.{ChordError.__qualname__}"
MAX_STEPS = 100
"""More steps than any workflow's lineage; guards against a cycle made by hand in SQL."""


def cause(store: ResultStore, record: TaskRecord) -> TaskRecord:
    """The row whose outcome ``get()`` reports for ``record``: ``record`` itself, or
    for a ChordError the failed task that caused it (when its row is there)."""
    for _ in range(MAX_STEPS):
        if not _is_chord_error(record) or not record.parent_id:
            return record
        found = _failed_before(store, record.parent_id)
        if found is None:
            return record
        record = found
    return record


def _failed_before(store: ResultStore, parent_id: str) -> TaskRecord | None:
    """The ready failure that ``parent_id`` (a chord's header group, or an earlier
    step of a failed body) leads to, if any."""
    group = store.get_groups([parent_id]).get(parent_id)
    task_id = group.failed_task_id if group is not None else parent_id
    if not task_id:
        return None  # a chord whose body could not be sent: the ChordError is the cause
    found = store.get(task_id)
    return found if found is not None and found.state in (FAILURE, REVOKED) else None


def _is_chord_error(record: TaskRecord) -> bool:
    return record.state == FAILURE and record.exception_type == CHORD_ERROR
