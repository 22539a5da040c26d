"""A redelivered task whose previous worker is still running it: wait for that worker.

When a worker's broker connection dies (its RabbitMQ node was lost, a network cut),
RabbitMQ gives the deliveries it had not acknowledged to other consumers, including
the task it is still running. The next worker's claim finds that attempt STARTED.
Before this module, the poison guard took the attempt as lost with its process and
ran it again, so a task in flight ran twice. Now, when the row's worker process is
still connected to the database (hutch.results.owners), the redelivery waits for it:
once the row moves on (finished, or a retry scheduled) the executor settles the
delivery by that row, unrun; if the owner goes away first, or is still running after
``OWNER_WAIT_MAX``, the attempt is judged as before (hutch.worker.poison).

The wait holds one pool slot; it happens only on a redelivery that finds its attempt
STARTED, which is rare.
"""

from __future__ import annotations

import threading
import time

from ..errors import BackendError
from ..logs import get_logger
from ..messages import TaskMessage
from ..results.records import Seen
from ..results.store import ResultStore

log = get_logger("hutch.worker")

OWNER_WAIT_MAX = 300.0
"""Longest a redelivery waits for a live owner before running the task again."""

OWNER_POLL = 0.25
"""Seconds between two looks at the row and the owner's connection."""


def wait_for_owner(store: ResultStore, seen: Seen, message: TaskMessage,
                   closing: threading.Event) -> Seen | None:
    """The row once its live owner is done with this attempt, or ``seen`` unchanged
    when the owner is gone (or cannot be seen); None if the worker stops meanwhile."""
    owner = seen.worker
    if not owner or not _connected(store, owner):
        return seen
    log.info("the worker that started this task is still connected to the database (its "
             "broker connection was lost, not its process): waiting for it to finish",
             task_id=message.id, task_name=message.task, owner=owner)
    deadline = time.monotonic() + OWNER_WAIT_MAX
    while time.monotonic() < deadline:
        if closing.wait(OWNER_POLL):
            return None
        row = _row(store, message.id)
        if row is not None and (row.state, row.retries) != (seen.state, seen.retries):
            return row
        if not _connected(store, owner):
            return _row(store, message.id) or seen  # it may have finished as it went
    log.warning("the worker that started this task still runs it; running it again",
                task_id=message.id, task_name=message.task, owner=owner,
                waited_s=OWNER_WAIT_MAX)
    return seen


def _connected(store: ResultStore, owner: str) -> bool:
    try:
        return bool(store.connected(owner))
    except BackendError:  # cannot tell: judged as before
        return False


def _row(store: ResultStore, task_id: str) -> Seen | None:
    try:
        record = store.get_many([task_id]).get(task_id)
    except BackendError:
        return None
    return Seen(record.state, record.retries, record.worker) if record else None
