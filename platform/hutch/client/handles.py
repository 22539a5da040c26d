"""AsyncResult and GroupResult: handles on task rows and group rows, readable from any process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..current import current_app
from ..errors import TaskRevokedError, TimeoutError
from ..results.causes import cause
from ..results.exceptions import rebuild
from ..results.groups import GroupRecord
from ..results.records import (
    FAILURE,
    PENDING,
    READY_STATES,
    RETRY,
    REVOKED,
    SUCCESS,
    TaskRecord,
    decode_result,
)
from ..results.store import ResultStore
from . import revocation
from .waiter import FALLBACK_RECHECK

if TYPE_CHECKING:
    from .sync import Client

T = TypeVar("T")


class AsyncResult:
    """``AsyncResult(id)``: state, result and lineage of a task, read from the database.

    ``ignored``: the handle of a task sent with ``ignore_result``, which never has a
    row to wait for: ``get()`` returns None at once (a handle made from the bare id
    elsewhere does not know, and stays PENDING, as in Celery).
    """

    is_group = False

    def __init__(self, id: str, client: Client,  # noqa: A002 - Celery's name
                 parent: AsyncResult | GroupResult | None = None, *,
                 ignored: bool = False) -> None:
        self.id = id
        self.client = client
        self._parent = parent
        self.ignored = ignored

    # -- reading ------------------------------------------------------------------
    def _record(self) -> TaskRecord | None:
        return self.client.store.get(self.id)

    @property
    def state(self) -> str:
        """PENDING for an id never seen, as in Celery."""
        record = self._record()
        return record.state if record else PENDING

    status = state

    def ready(self) -> bool:
        return self.state in READY_STATES

    def successful(self) -> bool:
        return self.state == SUCCESS

    def failed(self) -> bool:
        return self.state == FAILURE

    @property
    def result(self) -> Any:
        """The return value; the exception instance for a failed task, and for one
        waiting for a retry the failed attempt's exception (as in Celery)."""
        record = self._record()
        if record is None:
            return None
        if record.state in (FAILURE, RETRY):
            return rebuild_exception(record)
        return decode_result(record, self.client.conf.accept_content)

    info = result

    @property
    def traceback(self) -> str | None:
        record = self._record()
        return record.traceback if record else None

    @property
    def name(self) -> str | None:
        record = self._record()
        return record.name if record else None

    @property
    def date_done(self) -> Any:
        record = self._record()
        return record.finished_at if record else None

    @property
    def parent(self) -> AsyncResult | GroupResult | None:
        """The task (or, for a chord body, the header group) that this one came from.

        Known without a database read for handles a workflow returned; otherwise
        read from the row's ``parent_id``.
        """
        if self._parent is not None:
            return self._parent
        record = self._record()
        if record is None or not record.parent_id:
            return None
        found = self.client.store.get_groups([record.parent_id]).get(record.parent_id)
        if found is not None:
            return GroupResult.from_record(found, self.client)
        return AsyncResult(record.parent_id, self.client)

    @property
    def children(self) -> list[AsyncResult]:
        """Tasks this one caused: link callbacks and tasks sent from inside it."""
        return [AsyncResult(i, self.client) for i in self.client.store.children(self.id)]

    # -- acting -------------------------------------------------------------------
    def revoke(self, terminate: bool = False, signal: str | int | None = None) -> None:
        """Revoke this task (see :func:`hutch.client.revocation.revoke`)."""
        revocation.revoke(self.client, self.id, terminate, signal)

    # -- waiting ------------------------------------------------------------------
    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float | None = None) -> Any:
        """Wait for the result; re-raise the task's exception when ``propagate``.
        None at once for a task sent with ``ignore_result`` (nothing will be stored).

        ``interval`` is accepted for Celery compatibility; waiting is driven by
        completion notices, not by polling.
        """
        if self.ignored:
            return None
        record = self._wait(timeout)
        if propagate:  # a failed chord raises its failed header task's exception
            record = cause(self.client.store, record)
        return outcome(record, self.client.conf.accept_content, propagate)

    wait = get

    def _wait(self, timeout: float | None) -> TaskRecord:
        """This task's ready row; or, for a handle a workflow returned, the row of an
        earlier step that failed (see TaskProbe)."""
        probe = TaskProbe(self.client.store, self.id, ancestor_ids(self._parent))
        return wait_for(self.client, probe.ids, probe, timeout, lambda: probe.late(timeout))

    def forget(self) -> None:
        """Delete the task's row."""
        self.client.store.forget(self.id)

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


class GroupResult:
    """The results of a group's members, in order (``group(...)()`` returns one).

    ``id`` is the group's row in ``hutch_groups``; ``GroupResult.restore(id)``
    rebuilds the handle in any process. A member that is itself a workflow is
    represented by its result: a chain's last task, a chord's body.
    """

    is_group = True

    def __init__(self, id: str, results: Sequence[AsyncResult | GroupResult],  # noqa: A002
                 client: Client | None = None,
                 parent: AsyncResult | GroupResult | None = None) -> None:
        self.id = id
        self.results = list(results)
        self.client = client if client is not None else current_app().client()
        self.parent = parent

    # -- finding ------------------------------------------------------------------
    @classmethod
    def restore(cls, id: str, app: Any = None,  # noqa: A002 - Celery's names
                client: Client | None = None) -> GroupResult | None:
        """The group stored under ``id`` (by ``group()``, or ``save()``), or None."""
        client = client or (app or current_app()).client()
        record = client.store.get_groups([id]).get(id)
        return cls.from_record(record, client) if record is not None else None

    @classmethod
    def from_record(cls, record: GroupRecord, client: Client) -> GroupResult:
        nested = client.store.get_groups(record.member_ids)
        members: list[AsyncResult | GroupResult] = [
            cls.from_record(nested[i], client) if i in nested else AsyncResult(i, client)
            for i in record.member_ids]
        return cls(record.group_id, members, client)

    def save(self) -> GroupResult:
        """Store the member ids under ``id`` (groups sent by hutch are stored already)."""
        self.client.store.save_group(self.id, [r.id for r in self.results])
        return self

    # -- reading ------------------------------------------------------------------
    def _tasks(self) -> list[AsyncResult]:
        return [r for r in self.results if isinstance(r, AsyncResult)]

    def _states(self) -> list[str]:
        """Each member's state, in order (a nested group: SUCCESS/FAILURE/PENDING)."""
        rows = self.client.store.get_many(r.id for r in self._tasks())
        out = []
        for member in self.results:
            if isinstance(member, GroupResult):
                out.append(FAILURE if member.failed() else SUCCESS if member.successful()
                           else PENDING)
            else:
                row = rows.get(member.id)
                out.append(row.state if row else PENDING)
        return out

    def ready(self) -> bool:
        return all(s in READY_STATES for s in self._states())

    def successful(self) -> bool:
        return all(s == SUCCESS for s in self._states())

    def failed(self) -> bool:
        return any(s == FAILURE for s in self._states())

    def waiting(self) -> bool:
        return not self.ready()

    def completed_count(self) -> int:
        """How many members succeeded."""
        return sum(s == SUCCESS for s in self._states())

    @property
    def children(self) -> list[AsyncResult | GroupResult]:
        return self.results

    # -- acting -------------------------------------------------------------------
    def revoke(self, terminate: bool = False, signal: str | int | None = None) -> None:
        """Revoke every member task (``app.control.revoke`` with all their ids)."""
        ids = [r.id for r in self._tasks()]
        if ids:
            revocation.revoke(self.client, ids, terminate, signal)
        for member in self.results:
            if isinstance(member, GroupResult):
                member.revoke(terminate, signal)

    def forget(self) -> None:
        for member in self.results:
            member.forget()

    # -- waiting ------------------------------------------------------------------
    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float | None = None) -> list[Any]:
        """Every member's result in order; the first failure (in order) is raised
        when ``propagate``. Waiting is driven by completion notices, as for AsyncResult."""
        deadline = None if timeout is None else time.monotonic() + timeout
        records = self._wait_all(timeout)
        accept = self.client.conf.accept_content
        values = []
        for member in self.results:
            if isinstance(member, GroupResult):
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                values.append(member.get(left, propagate))
            else:
                record = records[member.id]
                if propagate:
                    record = cause(self.client.store, record)
                values.append(outcome(record, accept, propagate))
        return values

    join = get

    def _wait_all(self, timeout: float | None) -> dict[str, TaskRecord]:
        probe = GroupProbe(self.client.store, self.id, [r.id for r in self._tasks()])
        return wait_for(self.client, probe.ids, probe, timeout, lambda: probe.late(timeout))

    def __iter__(self) -> Iterator[AsyncResult | GroupResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> AsyncResult | GroupResult:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GroupResult) and other.id == self.id \
            and other.results == self.results

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} [{', '.join(r.id for r in self.results)}]>"


class TaskProbe:
    """One read of a task's row that says whether waiting is over: the task is ready, or
    (for a handle a workflow returned) an earlier step failed, so the later steps will
    never run; its row is returned then, as Celery's ``get()`` re-raises a parent's error."""

    def __init__(self, store: ResultStore, task_id: str, ancestors: list[str]) -> None:
        self.store = store
        self.ids = [task_id, *ancestors]
        self.seen: TaskRecord | None = None

    def __call__(self) -> TaskRecord | None:
        rows = self.store.get_many(self.ids)
        record = self.seen = rows.get(self.ids[0])
        if record is not None and record.state in READY_STATES:
            return record
        failed = [rows[i] for i in self.ids[1:]
                  if i in rows and rows[i].state in (FAILURE, REVOKED)]
        return failed[0] if failed else None

    def late(self, timeout: float | None) -> str:
        return (f"task {self.ids[0]} not ready after {timeout} s "
                f"(state {self.seen.state if self.seen else PENDING})")


class GroupProbe:
    """One read of a group's task rows: all of them once every one is ready."""

    def __init__(self, store: ResultStore, group_id: str, task_ids: list[str]) -> None:
        self.store, self.group_id = store, group_id
        self.ids = list(dict.fromkeys(task_ids))
        self.done: dict[str, TaskRecord] = {}

    def __call__(self) -> dict[str, TaskRecord] | None:
        missing = [i for i in self.ids if i not in self.done]
        for task_id, record in self.store.get_many(missing).items():
            if record.state in READY_STATES:
                self.done[task_id] = record
        return self.done if len(self.done) == len(self.ids) else None

    def late(self, timeout: float | None) -> str:
        return (f"group {self.group_id}: {len(self.ids) - len(self.done)} of {len(self.ids)} "
                f"tasks not ready after {timeout} s")


def ancestor_ids(node: Any) -> list[str]:
    """Ids of the earlier tasks a workflow's handle was linked to when it was built
    (``node`` its parent handle: a task's, sync or awaitable, or a group's)."""
    out: list[str] = []
    while node is not None:
        if node.is_group:
            node = node.parent
        else:
            out.append(node.id)
            node = node._parent
    return out


def wait_for(client: Client, ids: list[str], ready: Callable[[], T | None],
             timeout: float | None, describe: Callable[[], str]) -> T:
    """Call ``ready()`` each time one of ``ids`` is announced complete (and at least
    every FALLBACK_RECHECK seconds) until it returns something; TimeoutError with
    ``describe()`` after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    waiter = client.waiter
    event = waiter.watch_many(ids)  # before the first read, so no notice is missed
    try:
        while True:
            found = ready()
            if found is not None:
                return found
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(describe())
            event.wait(FALLBACK_RECHECK if remaining is None else min(remaining, FALLBACK_RECHECK))
            event.clear()
    finally:
        waiter.unwatch_many(ids, event)


def outcome(record: TaskRecord, accept: tuple[str, ...], propagate: bool) -> Any:
    """A ready row as ``get()`` returns it: the value, or the exception raised
    (``propagate``) or returned."""
    if record.state == SUCCESS:
        return decode_result(record, accept)
    if not propagate:
        return rebuild_exception(record) if record.state == FAILURE else None
    if record.state == REVOKED:
        raise TaskRevokedError(
            f"task {record.task_id} was revoked: {record.exception_message or ''}".strip())
    raise rebuild_exception(record)


def rebuild_exception(record: TaskRecord) -> BaseException:
    """The task's exception, rebuilt from its arguments (see hutch.results.exceptions)."""
    return rebuild(record.exception_type, record.exception_message, record.exception_args)
