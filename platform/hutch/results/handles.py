"""AsyncResult: a handle on one task's row, readable from any process."""

from __future__ import annotations

import builtins
import importlib
import time
from typing import TYPE_CHECKING, Any

from .. import serialization
from ..errors import ContentDisallowed, TaskFailure, TaskRevokedError, TimeoutError
from .records import FAILURE, PENDING, READY_STATES, REVOKED, SUCCESS, TaskRecord
from .waiter import FALLBACK_RECHECK

if TYPE_CHECKING:
    from ..client import Client


class AsyncResult:
    """``AsyncResult(id)``: state, result and lineage of a task, read from the database."""

    def __init__(self, id: str, client: Client) -> None:  # noqa: A002 - Celery's name
        self.id = id
        self.client = client

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
        """The return value, or the exception instance for a failed task."""
        record = self._record()
        if record is None:
            return None
        if record.state == FAILURE:
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
    def parent(self) -> AsyncResult | None:
        record = self._record()
        return AsyncResult(record.parent_id, self.client) if record and record.parent_id else None

    @property
    def children(self) -> list[AsyncResult]:
        """Tasks this one caused: link callbacks and tasks sent from inside it."""
        return [AsyncResult(i, self.client) for i in self.client.store.children(self.id)]

    # -- acting -------------------------------------------------------------------
    def revoke(self, terminate: bool = False, signal: str | int | None = None) -> None:
        """Revoke this task (see :meth:`hutch.control.Control.revoke`)."""
        from ..control import Control  # control imports results; resolved at call time

        Control(self.client).revoke(self.id, terminate=terminate, signal=signal)

    # -- waiting ------------------------------------------------------------------
    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float | None = None) -> Any:
        """Wait for the result; re-raise the task's exception when ``propagate``.

        ``interval`` is accepted for Celery compatibility; waiting is driven by
        completion notices, not by polling.
        """
        record = self._wait(timeout)
        if record.state == SUCCESS:
            return decode_result(record, self.client.conf.accept_content)
        if not propagate:
            return rebuild_exception(record) if record.state == FAILURE else None
        if record.state == REVOKED:
            raise TaskRevokedError(f"task {self.id} was revoked: {record.exception_message or ''}".strip())
        raise rebuild_exception(record)

    wait = get

    def _wait(self, timeout: float | None) -> TaskRecord:
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = self.client.waiter
        event = waiter.watch(self.id)
        try:
            while True:
                record = self._record()
                if record is not None and record.state in READY_STATES:
                    return record
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"task {self.id} not ready after {timeout} s "
                                       f"(state {record.state if record else PENDING})")
                event.wait(FALLBACK_RECHECK if remaining is None
                           else min(remaining, FALLBACK_RECHECK))
                event.clear()
        finally:
            waiter.unwatch(self.id, event)

    def forget(self) -> None:
        """Delete the task's row."""
        self.client.store.forget(self.id)

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def decode_result(record: TaskRecord, accept: tuple[str, ...]) -> Any:
    if record.result_encoded is not None:
        try:
            return serialization.loads(record.result_encoded, record.result_content_type, None,
                                       accept)
        except ContentDisallowed as exc:
            raise ContentDisallowed(f"result of {record.task_id}: {exc}") from None
    return serialization.from_primitive(record.result)


def rebuild_exception(record: TaskRecord) -> BaseException:
    """The task's exception as its own type when importable, else TaskFailure."""
    type_name = record.exception_type or "Exception"
    message = record.exception_message or ""
    module_name, _, qualname = type_name.rpartition(".")
    try:
        owner: Any = importlib.import_module(module_name) if module_name else builtins
        exc_type = owner
        for part in qualname.split("."):
            exc_type = getattr(exc_type, part)
        if isinstance(exc_type, type) and issubclass(exc_type, BaseException):
            return exc_type(message)
    except Exception:  # noqa: BLE001 - any failure to rebuild falls back to TaskFailure
        pass
    return TaskFailure(type_name, message)
