"""Plain values exchanged with the result store, independent of SQLAlchemy."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .. import serialization
from ..errors import ContentDisallowed
from ..messages import Carried

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
RETRY = "RETRY"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
REJECTED = "REJECTED"
"""The task raised ``Reject``: its message is in the dead-letter queue (hutch.errors.Reject)."""
IGNORED = "IGNORED"
"""The task raised ``Ignore``: its message was acknowledged with no outcome."""

ALL_STATES = (PENDING, RECEIVED, STARTED, RETRY, SUCCESS, FAILURE, REVOKED, REJECTED, IGNORED)
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED, REJECTED, IGNORED})

STATE_RANK = {PENDING: 0, RECEIVED: 1, STARTED: 2, RETRY: 3, SUCCESS: 4, FAILURE: 4, REVOKED: 4,
              REJECTED: 4, IGNORED: 4}
"""Order within one attempt. Across attempts the retry count decides: a change is
applied when (retries, rank) is greater than what the row has, and a ready state is final."""


@dataclass
class StateChange:
    """One write to a task's row. ``None`` fields leave the stored value as it is.

    ``args``/``kwargs``/``result``/``exception_args``/``stamps`` hold JSON-ready values (already
    tagged by :func:`hutch.serialization.to_primitive`); a result JSON cannot hold goes
    in ``result_encoded`` with its ``result_content_type`` instead.
    """

    task_id: str
    state: str
    name: str | None = None
    args: Any = None
    kwargs: Any = None
    queue: str | None = None
    worker: str | None = None
    retries: int = 0
    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None
    result: Any = None
    result_encoded: bytes | None = None
    result_content_type: str | None = None
    exception_type: str | None = None
    exception_message: str | None = None
    exception_args: Any = None
    traceback: str | None = None
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    schedule_name: str | None = None
    created_at: dt.datetime | None = None
    received_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    stamps: Any = None

    def merge(self, later: StateChange) -> StateChange:
        """Fold a later change of the same task into this one (later non-None values win)."""
        for name, value in vars(later).items():
            if value is not None:
                setattr(self, name, value)
        return self


@dataclass(frozen=True)
class TaskRecord:
    """A task's row as read back."""

    task_id: str
    state: str
    name: str | None
    args: Any
    kwargs: Any
    result: Any
    result_encoded: bytes | None
    result_content_type: str | None
    exception_type: str | None
    exception_message: str | None
    exception_args: Any
    traceback: str | None
    queue: str | None
    worker: str | None
    retries: int
    parent_id: str | None
    root_id: str | None
    group_id: str | None
    eta: dt.datetime | None
    expires: dt.datetime | None
    schedule_name: str | None
    created_at: dt.datetime | None
    received_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    stamps: Any = None

    @property
    def ready(self) -> bool:
        return self.state in READY_STATES


@dataclass(frozen=True)
class Seen:
    """A stored row's state and attempt, as a RECEIVED change that did not apply found it."""

    state: str
    retries: int
    worker: str | None = None
    """The process that wrote the row last (``node:pid``)."""
    received_at: dt.datetime | None = None
    """When the delivery that wrote the row's RECEIVED change arrived."""

    @property
    def ready(self) -> bool:
        return self.state in READY_STATES


@dataclass
class Claims:
    """Ids whose RECEIVED change in a batch must report what it found.

    ``ResultStore.write`` fills ``found`` in the batch's own transaction: an id the
    change applied to (the row was absent, PENDING, or an earlier attempt) is left
    out; any other id maps to the row that kept it out (hutch.worker.claims).
    ``durable=False`` (PostgreSQL): the claim's commit returns before its WAL is
    flushed (``synchronous_commit`` off for that statement alone; see
    ``worker_claim_synchronous_commit``).
    """

    ids: frozenset[str]
    found: dict[str, Seen] = field(default_factory=dict)
    durable: bool = True


@dataclass
class Applied:
    """The SUCCESS rows a batch's upsert applied to, as stored, whose result is small
    enough for a completion notice to carry (hutch.messages.CARRY_MAX):
    ``ResultStore.write`` fills ``carried`` in the batch's own statement. A SUCCESS
    left out did not apply (the precedence rule kept the row as it was) or is larger."""

    carried: dict[str, Carried] = field(default_factory=dict)


def carried_record(task_id: str, carried: Carried) -> TaskRecord:
    """A SUCCESS row as a notice carried it: its outcome, no other column."""
    return TaskRecord(
        task_id=task_id, state=SUCCESS, name=None, args=None, kwargs=None,
        result=carried.result, result_encoded=carried.encoded,
        result_content_type=carried.content_type, exception_type=None,
        exception_message=None, exception_args=None, traceback=None, queue=None,
        worker=None, retries=0, parent_id=None, root_id=None, group_id=None, eta=None,
        expires=None, schedule_name=None, created_at=None, received_at=None,
        started_at=None, finished_at=None)


def decode_result(record: TaskRecord, accept: tuple[str, ...]) -> Any:
    if record.result_encoded is not None:
        try:
            return serialization.loads(record.result_encoded, record.result_content_type, None,
                                       accept)
        except ContentDisallowed as exc:
            raise ContentDisallowed(f"result of {record.task_id}: {exc}") from None
    return serialization.from_primitive(record.result)
