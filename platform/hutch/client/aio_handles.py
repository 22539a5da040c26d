"""The awaitable result handles of ``AsyncClient``: ``AsyncTaskResult`` and
``AsyncGroupResult``, twins of :class:`hutch.AsyncResult` and :class:`hutch.GroupResult`.

They read the same rows with the same probes (hutch.client.handles), in a worker
thread, and wait on the async client's completion notices instead of a thread's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from ..config import Settings
from ..errors import TimeoutError
from ..results.causes import cause
from ..results.records import PENDING, READY_STATES, SUCCESS, TaskRecord
from ..results.store import ResultStore
from .handles import GroupProbe, TaskProbe, ancestor_ids, outcome
from .waiter import FALLBACK_RECHECK

T = TypeVar("T")


class AsyncSource(Protocol):
    """What an awaitable handle needs of the ``AsyncClient`` that made it: its settings,
    its store and its completion notices. Named here, so this module does not import
    :mod:`hutch.client.aio`, which imports it to return these handles."""

    conf: Settings

    @property
    def store(self) -> ResultStore: ...

    async def _watch_many(self, task_ids: list[str]) -> asyncio.Event: ...

    def _unwatch_many(self, task_ids: list[str], event: asyncio.Event) -> None: ...


class AsyncTaskResult:
    """The awaitable twin of :class:`hutch.AsyncResult` (``ignored`` as there);
    ``await result`` is ``await result.get()``."""

    is_group = False

    def __init__(self, id: str, client: AsyncSource,  # noqa: A002 - Celery's name
                 parent: AsyncTaskResult | AsyncGroupResult | None = None, *,
                 ignored: bool = False) -> None:
        self.id = id
        self.client = client
        self._parent = parent
        self.ignored = ignored

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

    async def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """The result, as :meth:`hutch.AsyncResult.get` (a failed earlier step of a
        workflow, or a chord's failed header task, is raised as there)."""
        if self.ignored:
            return None
        probe = TaskProbe(self.client.store, self.id, ancestor_ids(self._parent))
        record = await wait_async(self.client, probe.ids, probe, timeout,
                                  lambda: probe.late(timeout))
        return await _outcome(self.client, record, propagate)

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

    async def ready(self) -> bool:
        for member in self.results:
            if not await member.ready():
                return False
        return True

    async def get(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """Every member's result in order; the first failure (in order) is raised
        when ``propagate``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        probe = GroupProbe(self.client.store, f"group {self.id}",
                           [r.id for r in self._tasks()])
        records = await wait_async(self.client, probe.ids, probe, timeout,
                                   lambda: probe.late(timeout))
        values = []
        for member in self.results:
            if isinstance(member, AsyncGroupResult):
                left = None if deadline is None else max(0.0, deadline - loop.time())
                values.append(await member.get(left, propagate))
            else:
                values.append(await _outcome(self.client, records[member.id], propagate))
        return values

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


async def _outcome(client: AsyncSource, record: TaskRecord, propagate: bool) -> Any:
    """The ready row as ``get()`` returns it; a chord's failure is traced to its cause
    (a read, in a thread, only for a failed row)."""
    if propagate and record.state != SUCCESS:
        record = await asyncio.to_thread(cause, client.store, record)
    return outcome(record, client.conf.accept_content, propagate)


async def wait_async(client: AsyncSource, ids: list[str], ready: Callable[[], T | None],
                     timeout: float | None, describe: Callable[[], str]) -> T:
    """``hutch.client.handles.wait_for`` for asyncio: call ``ready()`` (in a thread) each
    time one of ``ids`` is announced complete, and at least every FALLBACK_RECHECK seconds."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    event = await client._watch_many(ids)  # before the first read, so no notice is missed
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
        client._unwatch_many(ids, event)
