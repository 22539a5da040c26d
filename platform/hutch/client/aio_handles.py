"""The awaitable result handles of ``AsyncClient``: ``AsyncTaskResult`` and
``AsyncGroupResult``, twins of :class:`hutch.AsyncResult` and :class:`hutch.GroupResult`.

They read the same rows with the same probes (hutch.client.handles), in a worker
thread, and wait on the async client's completion notices instead of a thread's.
What reads a row is a coroutine here (``await r.state()``, ``await r.details()``),
where the synchronous handles have properties. Like those, they travel as their id
when passed to a task (``__json__``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..config import Settings
from ..errors import IncompleteStream, TimeoutError
from ..results.causes import cause
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
from ..serialization import from_primitive
from .aio_confirms import AsyncUnconfirmed
from .handles import (
    ErrorCallback,
    GroupProbe,
    TaskProbe,
    ThenCallback,
    ValueCallback,
    ancestor_ids,
    outcome,
    rebuild_exception,
)
from .waiter import FALLBACK_RECHECK

T = TypeVar("T")


class AsyncSource(Protocol):
    """What an awaitable handle needs of the ``AsyncClient`` that made it: its settings,
    its store and its completion notices. Named here, so this module does not import
    :mod:`hutch.client.aio`, which imports it to return these handles."""

    conf: Settings

    @property
    def store(self) -> ResultStore: ...

    async def _watch_many(self, task_ids: list[str], own: bool = False) -> asyncio.Event: ...

    def _unwatch_many(self, task_ids: list[str], event: asyncio.Event,
                      own: bool = False) -> None: ...


@dataclass(frozen=True)
class ResultDetails:
    """A task's row as Celery's extended result fields (``await r.details()``)."""

    state: str
    name: str | None
    args: list[Any] | None
    kwargs: dict[str, Any] | None
    worker: str | None
    queue: str | None
    retries: int | None
    date_done: dt.datetime | None


class AsyncTaskResult:
    """The awaitable twin of :class:`hutch.AsyncResult` (``ignored``, ``unconfirmed`` and
    ``sent_here`` as there); ``await result`` is ``await result.get()``."""

    is_group = False

    def __init__(self, id: str, client: AsyncSource,  # noqa: A002 - Celery's name
                 parent: AsyncTaskResult | AsyncGroupResult | None = None, *,
                 ignored: bool = False, unconfirmed: AsyncUnconfirmed | None = None,
                 sent_here: bool = False) -> None:
        self.id = id
        self.client = client
        self._parent = parent
        self.ignored = ignored
        self._unconfirmed = unconfirmed
        self.sent_here = sent_here

    @property
    def parent(self) -> AsyncTaskResult | AsyncGroupResult | None:
        """The handle this one came from in a workflow sent by this client, else None."""
        return self._parent

    async def _record(self) -> TaskRecord | None:
        return await asyncio.to_thread(self.client.store.get, self.id)

    async def state(self) -> str:
        record = await self._record()
        return record.state if record else PENDING

    async def ready(self) -> bool:
        return (await self.state()) in READY_STATES

    async def successful(self) -> bool:
        return (await self.state()) == SUCCESS

    async def failed(self) -> bool:
        return (await self.state()) == FAILURE

    async def date_done(self) -> dt.datetime | None:
        """When the task finished (aware UTC), None until it has."""
        return (await self.details()).date_done

    async def details(self) -> ResultDetails:
        """The row's fields that Celery's ``result_extended`` adds, in one read
        (PENDING and None for an id with no row)."""
        record = await self._record()
        if record is None:
            return ResultDetails(PENDING, None, None, None, None, None, None, None)
        return ResultDetails(
            record.state, record.name,
            from_primitive(record.args) if record.args is not None else None,
            from_primitive(record.kwargs) if record.kwargs is not None else None,
            record.worker, record.queue, record.retries, record.finished_at)

    async def children(self) -> list[AsyncTaskResult]:
        """Tasks this one caused: link callbacks and tasks sent from inside it."""
        ids = await asyncio.to_thread(self.client.store.children, self.id)
        return [AsyncTaskResult(i, self.client) for i in ids]

    async def maybe_throw(self, propagate: bool = True,
                          callback: ValueCallback | None = None) -> Any:
        """As :meth:`hutch.AsyncResult.maybe_throw`: no waiting."""
        record = await self._record()
        value = None
        if record is not None and propagate and record.state in (FAILURE, REVOKED):
            await _outcome(self.client, record, True)
        if record is not None and record.state in (FAILURE, RETRY):
            value = rebuild_exception(record)
        elif record is not None and record.state == SUCCESS:
            value = decode_result(record, self.client.conf.accept_content)
        if callback is not None:
            callback(self.id, value)
        return value

    def then(self, callback: ThenCallback, on_error: ErrorCallback | None = None
             ) -> asyncio.Task[Any]:
        """An asyncio task that waits until this one is ready, then calls
        ``callback(self)`` (awaited if it returns an awaitable); what it returns is the
        task's result. An exception goes to ``on_error`` too when given."""
        async def wait() -> None:
            if not self.ignored:
                probe = TaskProbe(self.client.store, self.id, ancestor_ids(self._parent))
                await wait_async(self.client, probe.ids, probe, None, lambda: probe.late(None),
                                 self.sent_here)

        return asyncio.ensure_future(_then(self, wait(), callback, on_error))

    async def collect(self, intermediate: bool = False, **kwargs: Any
                      ) -> AsyncIterator[tuple[AsyncTaskResult, Any]]:
        """``(handle, value)`` for this task, then its children, breadth first, as
        :meth:`hutch.AsyncResult.collect` (IncompleteStream at a result not ready
        unless ``intermediate``)."""
        queue = [self]
        while queue:
            node = queue.pop(0)
            yield node, await node.get(**kwargs)
            if await node.ready():
                queue.extend(await node.children())
            elif not intermediate:
                raise IncompleteStream(f"{node!r} is not ready")

    def __json__(self) -> str:
        return self.id

    async def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """The result, as :meth:`hutch.AsyncResult.get` (a failed earlier step of a
        workflow, or a chord's failed header task, is raised as there)."""
        if self.ignored:
            return None
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not await self.confirmed(timeout):
            raise TimeoutError(f"task {self.id}: RabbitMQ has not confirmed it within "
                               f"{timeout:g}s")
        if timeout is not None:
            timeout = max(0.0, timeout - (loop.time() - started))
        probe = TaskProbe(self.client.store, self.id, ancestor_ids(self._parent))
        record = await wait_async(self.client, probe.ids, probe, timeout,
                                  lambda: probe.late(timeout), self.sent_here)
        return await _outcome(self.client, record, propagate)

    async def confirmed(self, timeout: float | None = None) -> bool:
        """True once RabbitMQ has confirmed the task's message (at once when the client
        awaited it, the default); False if ``timeout`` seconds pass first. Raises the
        error that kept it from being queued, as :meth:`hutch.AsyncResult.confirmed`."""
        return self._unconfirmed is None or await self._unconfirmed.confirmed(timeout)

    def __await__(self) -> Generator[Any, None, Any]:
        return self.get().__await__()

    def __repr__(self) -> str:
        return f"<AsyncTaskResult {self.id}>"


class AsyncGroupResult:
    """The awaitable twin of :class:`hutch.GroupResult`: ``await group_result`` is the
    list of the members' results, in order."""

    is_group = True

    def __init__(self, id: str,  # noqa: A002 - Celery's name
                 results: Sequence[AsyncTaskResult | AsyncGroupResult], client: AsyncSource,
                 parent: AsyncTaskResult | AsyncGroupResult | None = None) -> None:
        self.id = id
        self.results = list(results)
        self.client = client
        self.parent = parent

    def _tasks(self) -> list[AsyncTaskResult]:
        return [r for r in self.results if isinstance(r, AsyncTaskResult)]

    async def _states(self) -> list[str]:
        """Each member task's state (nested groups' members included), in one read."""
        ids = _task_ids(self)
        rows = await asyncio.to_thread(self.client.store.get_many, ids)
        return [rows[i].state if i in rows else PENDING for i in ids]

    async def ready(self) -> bool:
        return all(s in READY_STATES for s in await self._states())

    async def successful(self) -> bool:
        return all(s == SUCCESS for s in await self._states())

    async def failed(self) -> bool:
        return any(s == FAILURE for s in await self._states())

    async def waiting(self) -> bool:
        return not await self.ready()

    async def completed_count(self) -> int:
        """How many member tasks succeeded."""
        return sum(s == SUCCESS for s in await self._states())

    def then(self, callback: ThenCallback, on_error: ErrorCallback | None = None
             ) -> asyncio.Task[Any]:
        """As :meth:`AsyncTaskResult.then`: ``callback(self)`` once every member is ready."""
        return asyncio.ensure_future(_then(self, self.get(propagate=False), callback, on_error))

    def __json__(self) -> str:
        return self.id

    async def get(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """Every member's result in order; the first failure (in order) is raised
        when ``propagate``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        tasks = self._tasks()
        probe = GroupProbe(self.client.store, f"group {self.id}", [r.id for r in tasks])
        records = await wait_async(self.client, probe.ids, probe, timeout,
                                   lambda: probe.late(timeout),
                                   all(t.sent_here and t.client is self.client for t in tasks))
        values = []
        for member in self.results:
            if isinstance(member, AsyncGroupResult):
                left = None if deadline is None else max(0.0, deadline - loop.time())
                values.append(await member.get(left, propagate))
            else:
                values.append(await _outcome(self.client, records[member.id], propagate))
        return values

    join = get

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self.get().__await__()

    def __iter__(self) -> Iterator[AsyncTaskResult | AsyncGroupResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> AsyncTaskResult | AsyncGroupResult:
        return self.results[index]

    def __repr__(self) -> str:
        return f"<AsyncGroupResult {self.id} [{', '.join(r.id for r in self.results)}]>"


def _task_ids(group: AsyncGroupResult) -> list[str]:
    out: list[str] = []
    for member in group.results:
        out.extend(_task_ids(member) if isinstance(member, AsyncGroupResult) else [member.id])
    return out


async def _then(handle: Any, ready: Any, callback: ThenCallback,
                on_error: ErrorCallback | None) -> Any:
    """Await ``ready``, then ``callback(handle)`` (awaited if it gives an awaitable)."""
    try:
        await ready
        value = callback(handle)
        return await value if inspect.isawaitable(value) else value
    except Exception as exc:
        if on_error is not None:
            on_error(exc)
        raise


async def _outcome(client: AsyncSource, record: TaskRecord, propagate: bool) -> Any:
    """The ready row as ``get()`` returns it; a chord's failure is traced to its cause
    (a read, in a thread, only for a failed row)."""
    if propagate and record.state != SUCCESS:
        record = await asyncio.to_thread(cause, client.store, record)
    return outcome(record, client.conf.accept_content, propagate)


async def wait_async(client: AsyncSource, ids: list[str], ready: Callable[[], T | None],
                     timeout: float | None, describe: Callable[[], str],
                     own: bool = False) -> T:
    """``hutch.client.handles.wait_for`` for asyncio: call ``ready()`` (in a thread) each
    time one of ``ids`` is announced complete, and at least every FALLBACK_RECHECK seconds;
    ``own``: every one of ``ids`` was sent by ``client`` (hutch.client.waiter)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    event = await client._watch_many(ids, own)  # before the first read: no notice missed
    try:
        while True:
            found = await asyncio.to_thread(ready)
            if found is not None:
                return found
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(describe())
            try:
                await asyncio.wait_for(event.wait(), FALLBACK_RECHECK if remaining is None
                                       else min(remaining, FALLBACK_RECHECK))
            except asyncio.TimeoutError:
                pass
            event.clear()
    finally:
        client._unwatch_many(ids, event, own)
