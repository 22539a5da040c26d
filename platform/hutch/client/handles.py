"""AsyncResult, ResultSet and GroupResult: handles on task rows and group rows,
readable from any process.

Handles are values too: passed to a task or returned by one they travel as their id
(``__json__``, read by hutch.serialization), since a handle holds a client with live
connections, and the receiver may use another app; ``app.AsyncResult(id)`` or
``GroupResult.restore(id)`` rebuilds one there.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from ..current import current_app
from ..errors import IncompleteStream, TaskRevokedError, TimeoutError
from ..logs import get_logger
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
    carried_record,
    decode_result,
)
from ..results.store import ResultStore
from ..serialization import from_primitive
from . import revocation
from .waiter import FALLBACK_RECHECK, Mark

if TYPE_CHECKING:
    from ..app import Hutch
    from .confirms import Unconfirmed
    from .sync import Client

T = TypeVar("T")
Handle = Any
"""A member of a result set: an AsyncResult (or EagerResult), a GroupResult or a ResultSet."""
ThenCallback = Callable[[Any], Any]
ErrorCallback = Callable[[BaseException], Any]
ValueCallback = Callable[[Any, Any], Any]
"""Called with ``(task_id, value)`` (a nested set's id is None)."""

log = get_logger("hutch.results")


class AsyncResult:
    """``AsyncResult(id)``: state, result and lineage of a task, read from the database.

    ``ignored``: the handle of a task sent with ``ignore_result``, which never has a
    row to wait for: ``get()`` returns None at once (a handle made from the bare id
    elsewhere does not know, and stays PENDING, as in Celery).
    ``sent_mark``: the client's :meth:`CompletionWaiter.mark` just before it sent the
    task, so ``get()`` may wait for the notice before reading (see wait_for).
    ``unconfirmed``: the publish's confirm, when the client did not wait for it
    (``broker_confirm_wait`` off, hutch.client.confirms).
    ``sent_here``: ``client`` sent the task itself, or the workflow it belongs to, under
    its notice key (hutch.workflows.apply.handle), so waiting needs only its own
    notices (hutch.client.waiter).
    """

    is_group = False
    stored = True
    """Read from the result store (an EagerResult is not: it lives in memory)."""

    def __init__(self, id: str, client: Client,  # noqa: A002 - Celery's name
                 parent: AsyncResult | GroupResult | None = None, *,
                 ignored: bool = False, sent_mark: Mark | None = None,
                 unconfirmed: Unconfirmed | None = None, sent_here: bool = False) -> None:
        self.id = id
        self.client = client
        self._parent = parent
        self.ignored = ignored
        self._sent_mark = sent_mark
        self._unconfirmed = unconfirmed
        self.sent_here = sent_here

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

    # Celery's result_extended fields: always there, since they are the row's columns
    @property
    def name(self) -> str | None:
        record = self._record()
        return record.name if record else None

    @property
    def args(self) -> list[Any] | None:
        """The positional arguments as the row keeps them (None when JSON could not)."""
        record = self._record()
        return from_primitive(record.args) if record and record.args is not None else None

    @property
    def kwargs(self) -> dict[str, Any] | None:
        record = self._record()
        return from_primitive(record.kwargs) if record and record.kwargs is not None else None

    @property
    def worker(self) -> str | None:
        """The worker that ran (or is running) the task."""
        record = self._record()
        return record.worker if record else None

    @property
    def queue(self) -> str | None:
        record = self._record()
        return record.queue if record else None

    @property
    def retries(self) -> int | None:
        record = self._record()
        return record.retries if record else None

    @property
    def date_done(self) -> Any:
        """When the task finished (an aware UTC datetime), None until it has."""
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

    def collect(self, intermediate: bool = False, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
        """``(handle, value)`` for this task, then its children, breadth first (``get``
        takes ``kwargs``); IncompleteStream at a result not ready unless
        ``intermediate``, which walks past it instead (as Celery)."""
        for node in iterdeps(self, intermediate):
            yield node, node.get(**kwargs)

    def maybe_throw(self, propagate: bool = True,
                    callback: ValueCallback | None = None) -> Any:
        """Without waiting: raise the task's exception if it failed or was revoked
        (``propagate``); else call ``callback(id, value)`` and return the value."""
        record = self._record()
        value = None
        if record is not None and propagate and record.state in (FAILURE, REVOKED):
            outcome(cause(self.client.store, record), self.client.conf.accept_content, True)
        if record is not None and record.state in (FAILURE, RETRY):
            value = rebuild_exception(record)
        elif record is not None and record.state == SUCCESS:
            value = decode_result(record, self.client.conf.accept_content)
        if callback is not None:
            callback(self.id, value)
        return value

    maybe_reraise = maybe_throw

    def then(self, callback: ThenCallback, on_error: ErrorCallback | None = None
             ) -> Future[Any]:
        """Call ``callback(self)`` once the task is ready (see :func:`when_ready`)."""
        return when_ready(self, lambda: self.ignored or self.ready(),
                          lambda: self._wait(None), callback, on_error)

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
        started = time.monotonic()
        if not self.confirmed(timeout):
            raise TimeoutError(f"task {self.id}: RabbitMQ has not confirmed it within "
                               f"{timeout:g}s")
        if timeout is not None:
            timeout = max(0.0, timeout - (time.monotonic() - started))
        record = self._wait(timeout)
        if propagate:  # a failed chord raises its failed header task's exception
            record = cause(self.client.store, record)
        return outcome(record, self.client.conf.accept_content, propagate)

    wait = get

    def confirmed(self, timeout: float | None = None) -> bool:
        """True once RabbitMQ has confirmed the task's message (at once when the client
        waited for it, the default); False if ``timeout`` seconds pass first. Raises the
        error that kept it from being queued (PublishError, UnroutableError,
        BrokerUnavailable once out of publish retries)."""
        return self._unconfirmed is None or self._unconfirmed.confirmed(timeout)

    def _wait(self, timeout: float | None) -> TaskRecord:
        """This task's ready row; or, for a handle a workflow returned, the row of an
        earlier step that failed (see TaskProbe)."""
        probe = TaskProbe(self.client.store, self.id, ancestor_ids(self._parent))
        alone = len(probe.ids) == 1  # no earlier workflow step to hear of
        return wait_for(self.client, probe.ids, probe, timeout, lambda: probe.late(timeout),
                        self._sent_mark if alone else None, self._carried,
                        own=self.sent_here)

    def _carried(self) -> TaskRecord | None:
        """The SUCCESS a notice carried while this task was waited on: final (a ready
        row never changes), so it needs no read."""
        found = self.client.waiter.carried(self.id)
        return None if found is None else carried_record(self.id, found)

    def forget(self) -> None:
        """Delete the task's row."""
        self.client.store.forget(self.id)

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __json__(self) -> str:
        """A handle passed to or returned by a task travels as its id."""
        return self.id

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (the pickle serializer), a handle is its id too: its client holds
        connections, which cannot travel. Copies are handles (``__copy__``)."""
        return (type(self.__json__()), (self.__json__(),))

    def __copy__(self) -> Any:
        return _shallow(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        """The client is shared, never copied: a copy is one more handle on the row."""
        return self.__copy__()


class ResultSet:
    """Results to read and wait on together (Celery's ``ResultSet``): tasks, groups or
    other sets, from anywhere; ``GroupResult`` is the one a group returns.

    Members' rows are read in one query per check, and waiting is driven by completion
    notices, as for one AsyncResult. ``app``/``client`` name the result store; by
    default the first member's, else the current app's.
    """

    is_group = True
    parent: AsyncResult | GroupResult | None = None
    supports_native_join = True

    def __init__(self, results: Iterable[Handle] = (), app: Hutch | None = None, *,
                 client: Client | None = None) -> None:
        self.results: list[Handle] = list(results)
        self._client = client
        self._app = app

    @property
    def client(self) -> Client:
        if self._client is None:
            first = next((r.client for r in self.results if isinstance(r, ResultSet)
                          or (isinstance(r, AsyncResult) and r.stored)), None)
            self._client = first or (self._app or current_app()).client()
        return self._client

    @client.setter
    def client(self, client: Client) -> None:
        self._client = client

    # -- membership ---------------------------------------------------------------
    def add(self, result: Handle) -> None:
        """Add a result (kept once)."""
        if result not in self.results:
            self.results.append(result)

    def update(self, results: Iterable[Handle]) -> None:
        for result in results:
            self.add(result)

    def remove(self, result: Handle | str) -> None:
        """Remove a result (or a task id); KeyError if it is not a member."""
        if isinstance(result, str):
            result = AsyncResult(result, self.client)
        try:
            self.results.remove(result)
        except ValueError:
            raise KeyError(result) from None

    def discard(self, result: Handle | str) -> None:
        """Remove a result (or a task id) if it is a member."""
        try:
            self.remove(result)
        except KeyError:
            pass

    def clear(self) -> None:
        self.results.clear()

    # -- reading ------------------------------------------------------------------
    def _tasks(self) -> list[AsyncResult]:
        """The members read from the store, in one query: tasks with a row to come."""
        return [r for r in self.results
                if isinstance(r, AsyncResult) and r.stored and not r.ignored]

    def _states(self) -> list[str]:
        """Each member's state, in order (a nested set's: FAILURE if one of its members
        failed, else SUCCESS if all succeeded, else REVOKED once all are ready, else
        PENDING)."""
        tasks = self._tasks()
        rows = self.client.store.get_many(r.id for r in tasks) if tasks else {}
        out = []
        for member in self.results:
            if isinstance(member, ResultSet):
                states = member._states()
                out.append(FAILURE if FAILURE in states else SUCCESS
                           if all(s == SUCCESS for s in states) else REVOKED
                           if all(s in READY_STATES for s in states) else PENDING)
            elif member in tasks:
                row = rows.get(member.id)
                out.append(row.state if row else PENDING)
            else:
                out.append(SUCCESS if member.ignored else member.state)
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

    def maybe_throw(self, callback: ValueCallback | None = None,
                    propagate: bool = True) -> None:
        """Each member's :meth:`AsyncResult.maybe_throw`, in order (Celery's order of
        arguments here)."""
        for member in self.results:
            if isinstance(member, ResultSet):
                member.maybe_throw(callback, propagate)
            else:
                member.maybe_throw(propagate, callback)

    maybe_reraise = maybe_throw

    # -- acting -------------------------------------------------------------------
    def revoke(self, terminate: bool = False, signal: str | int | None = None) -> None:
        """Revoke every member task (one ``app.control.revoke`` with all their ids)."""
        tasks = self._tasks()
        if tasks:
            revocation.revoke(self.client, [r.id for r in tasks], terminate, signal)
        for member in self.results:
            if member not in tasks:
                member.revoke(terminate, signal)

    def forget(self) -> None:
        for member in self.results:
            member.forget()

    # -- waiting ------------------------------------------------------------------
    def join(self, timeout: float | None = None, propagate: bool = True,
             interval: float | None = None, callback: ValueCallback | None = None,
             **celery_options: Any) -> list[Any]:
        """Every member's result in order; the first failure (in order) is raised when
        ``propagate``. With ``callback``, each ``(id, value)`` goes to it in order and
        the list returned is empty. ``interval`` and Celery's other options
        (``no_ack``, ``on_message``, ``disable_sync_subtasks``...) are accepted:
        waiting is driven by completion notices."""
        deadline = None if timeout is None else time.monotonic() + timeout
        records = self._wait_all(timeout)
        values = []
        for member in self.results:
            value = self._value(member, records, propagate, _left(deadline))
            if callback is not None:
                callback(getattr(member, "id", None), value)
            else:
                values.append(value)
        return values

    get = join

    def join_native(self, timeout: float | None = None, propagate: bool = True,
                    interval: float | None = None,
                    callback: ValueCallback | None = None,
                    **celery_options: Any) -> list[Any]:
        """As :meth:`join`, but ``callback`` gets each task's value as soon as it is
        ready, in the order they finish (Celery's native join)."""
        tasks = self._tasks()
        if callback is None or not tasks:  # nothing stored finishes out of order
            return self.join(timeout, propagate, callback=callback)
        deadline = None if timeout is None else time.monotonic() + timeout
        probe = GroupProbe(self.client.store, self._label(), [r.id for r in tasks])
        told: set[str] = set()

        def report() -> dict[str, TaskRecord] | None:
            done = probe()
            for task_id, record in list(probe.done.items()):
                if task_id not in told:
                    told.add(task_id)
                    callback(task_id, self._outcome(record, propagate))
            return done

        wait_for(self.client, probe.ids, report, timeout, lambda: probe.late(timeout),
                 own=_all_sent_here(tasks, self.client))
        for member in self.results:
            if isinstance(member, ResultSet) or member.id not in told:
                callback(getattr(member, "id", None),
                         self._value(member, probe.done, propagate, _left(deadline)))
        return []

    def then(self, callback: ThenCallback, on_error: ErrorCallback | None = None
             ) -> Future[Any]:
        """Call ``callback(self)`` once every member is ready (see :func:`when_ready`)."""
        return when_ready(self, self.ready, lambda: self.join(propagate=False),
                          callback, on_error)

    def _value(self, member: Handle, records: dict[str, TaskRecord], propagate: bool,
               timeout: float | None) -> Any:
        """One member's result: from the rows read while waiting, or its own get()."""
        if not isinstance(member, ResultSet) and member.id in records:
            return self._outcome(records[member.id], propagate)
        return member.get(timeout=timeout, propagate=propagate)

    def _outcome(self, record: TaskRecord, propagate: bool) -> Any:
        if propagate:
            record = cause(self.client.store, record)
        return outcome(record, self.client.conf.accept_content, propagate)

    def _wait_all(self, timeout: float | None) -> dict[str, TaskRecord]:
        ids = [r.id for r in self._tasks()]
        if not ids:  # nothing stored to wait for (eager results): no store opened
            return {}
        probe = GroupProbe(self.client.store, self._label(), ids)
        return wait_for(self.client, probe.ids, probe, timeout, lambda: probe.late(timeout),
                        own=_all_sent_here(self._tasks(), self.client))

    def _label(self) -> str:
        return "result set"

    # -- a container --------------------------------------------------------------
    def __iter__(self) -> Iterator[Handle]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> Handle:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResultSet) and not isinstance(other, GroupResult) \
            and other.results == self.results

    __hash__ = None  # type: ignore[assignment]  # a mutable set, as in Celery

    def __json__(self) -> list[Any]:
        """Passed to or returned by a task: the members' ids (a group's as its id)."""
        return [member.__json__() for member in self.results]

    __reduce__ = AsyncResult.__reduce__
    __deepcopy__ = AsyncResult.__deepcopy__

    def __copy__(self) -> Any:
        """A set of its own with the same member handles."""
        new = _shallow(self)
        new.results = list(self.results)
        return new

    def __repr__(self) -> str:
        return f"<ResultSet [{', '.join(repr(r) for r in self.results)}]>"


class GroupResult(ResultSet):
    """The results of a group's members, in order (``group(...)()`` returns one): a
    :class:`ResultSet` with an id.

    ``id`` is the group's row in ``hutch_groups``; ``GroupResult.restore(id)``
    rebuilds the handle in any process. A member that is itself a workflow is
    represented by its result: a chain's last task, a chord's body.
    """

    def __init__(self, id: str, results: Sequence[Handle] = (),  # noqa: A002
                 client: Client | None = None,
                 parent: AsyncResult | GroupResult | None = None, *,
                 app: Hutch | None = None) -> None:
        super().__init__(results, app, client=client)
        self.id = id
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

    @property
    def children(self) -> list[Handle]:
        return self.results

    def _label(self) -> str:
        return f"group {self.id}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GroupResult) and other.id == self.id \
            and other.results == self.results

    def __hash__(self) -> int:  # type: ignore[override]  # a group is known by its id
        return hash(self.id)

    def __json__(self) -> str:  # type: ignore[override]  # a group travels as its id
        return self.id

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
    """One read of a group's (or a result set's) task rows: all of them once every one
    is ready."""

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
        return (f"{self.group_id}: {len(self.ids) - len(self.done)} of {len(self.ids)} "
                f"tasks not ready after {timeout} s")


def _all_sent_here(tasks: list[AsyncResult], client: Client) -> bool:
    """Whether ``client``, which waits for them, sent every one of ``tasks`` itself (see
    AsyncResult): a set may hold handles of other clients."""
    return all(task.sent_here and task.client is client for task in tasks)


def _shallow(handle: Any) -> Any:
    """A new handle with the same attributes (the same client)."""
    new = object.__new__(type(handle))
    new.__dict__.update(vars(handle))
    return new


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def iterdeps(root: Any, intermediate: bool = False) -> Iterator[Any]:
    """``root`` and the results under it (a task's children, a group's members),
    breadth first; a node's children are read once it is ready. A node not ready
    ends the walk with IncompleteStream unless ``intermediate``."""
    queue: deque[Any] = deque([root])
    while queue:
        node = queue.popleft()
        yield node
        if node.ready():
            queue.extend(node.children or ())
        elif not intermediate:
            raise IncompleteStream(f"{node!r} is not ready; collect(intermediate=True) "
                                   "walks past results that are not")


def when_ready(handle: Any, is_ready: Callable[[], bool], wait: Callable[[], Any],
               callback: ThenCallback, on_error: ErrorCallback | None) -> Future[Any]:
    r"""``then()`` for a synchronous client: ``callback(handle)`` runs at once in this
    thread when ``handle`` is ready, else in a daemon thread that ``wait()``\ s for it.
    The Future returned holds what the callback returned, or the exception it (or
    the waiting) raised; that exception goes to ``on_error`` too, or is logged."""
    future: Future[Any] = Future()

    def run(waited: bool) -> None:
        try:
            if waited:
                wait()
            future.set_result(callback(handle))
        except Exception as exc:  # noqa: BLE001 - handed to on_error and the Future
            future.set_exception(exc)
            if on_error is not None:
                on_error(exc)
            else:
                log.warning("then() callback failed", result=repr(handle),
                            error=f"{type(exc).__name__}: {exc}")

    if is_ready():
        run(False)
    else:
        threading.Thread(target=run, args=(True,), name="hutch-then", daemon=True).start()
    return future


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
             timeout: float | None, describe: Callable[[], str],
             since: Mark | None = None, carried: Callable[[], T | None] | None = None, *,
             own: bool = False) -> T:
    """Call ``ready()`` each time one of ``ids`` is announced complete (and at least
    every FALLBACK_RECHECK seconds) until it returns something; TimeoutError with
    ``describe()`` after ``timeout`` seconds.

    ``since``: the waiter's mark taken before the one task of ``ids`` was sent. If
    its id was not announced since, the task cannot have finished (workers announce
    after they commit), so the first read waits for the notice: one read per
    round trip instead of two. A lost notice costs FALLBACK_RECHECK, as it does
    for any wait. ``carried()``, asked after each wake-up, is the outcome a notice
    carried, returned without calling ``ready()`` (no read at all). ``own``: every
    one of ``ids`` was sent by ``client`` (hutch.client.waiter)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    waiter = client.waiter
    event = waiter.watch_many(ids, own)  # before the first read, so no notice is missed
    skip = since is not None and not waiter.announced_since(ids[0], since)
    try:
        while True:
            found = None if skip else ready()
            if found is not None:
                return found
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                if skip:  # never read yet: read once before giving up
                    skip = False
                    continue
                raise TimeoutError(describe())
            event.wait(FALLBACK_RECHECK if remaining is None else min(remaining, FALLBACK_RECHECK))
            event.clear()
            if carried is not None and (found := carried()) is not None:
                return found
            skip = False
    finally:
        waiter.unwatch_many(ids, event, own)


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
