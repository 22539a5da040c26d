"""AsyncClient: ``await client.submit(...)`` and awaitable results, for asyncio applications.

Publishing uses aio-pika with publisher confirms, so many concurrent submits
share one connection and pipeline their confirms. Result rows are read with
the same SQL store as the synchronous client, in a worker thread, and waiting
is woken by the workers' completion notices rather than by polling.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..brokers.amqp.aio import AsyncAmqpPublisher
from ..brokers.factory import open_broker
from ..call_options import RetryPolicy, build_message
from ..config import Settings
from ..errors import BrokerUnavailable, TaskRevokedError, TimeoutError
from ..messages import TaskMessage, Wire, resent
from ..results.records import FAILURE, PENDING, READY_STATES, REVOKED, SUCCESS
from ..results.store import ResultStore, open_store
from .handles import decode_result, rebuild_exception
from .pending import PendingWriter, pending_changes
from .waiter import FALLBACK_RECHECK, decode_notice

if TYPE_CHECKING:
    from ..app import Hutch


class _ThreadedPublisher:
    """memory:// behind the async publisher interface (the demo and unit tests)."""

    def __init__(self, conf: Settings) -> None:
        self._broker = open_broker(conf)

    async def connect(self) -> None:
        return None

    async def publish(self, messages: Sequence[tuple[str, Wire]], timeout: float | None) -> None:
        await asyncio.to_thread(self._broker.publish, messages, timeout)

    async def subscribe_events(self, on_event: Any) -> Any:
        loop = asyncio.get_running_loop()
        handle = self._broker.subscribe_events(
            lambda body: loop.call_soon_threadsafe(on_event, body))

        class _Handle:
            async def close(self) -> None:
                handle.close()
        return _Handle()

    async def close(self) -> None:
        self._broker.close()


class AsyncClient:
    """``AsyncClient(broker=..., backend=...)``; use as ``async with`` or call ``aclose()``."""

    def __init__(self, broker: str | None = None, backend: str | None = None, *,
                 app: Hutch | None = None, conf: Settings | None = None,
                 **settings: Any) -> None:
        self.conf = conf if conf is not None else Settings.build(broker, backend, **settings)
        self.app = app
        self._publisher: Any = None
        self._store: ResultStore | None = None
        self._events: Any = None
        self._pending: PendingWriter | None = None
        self._watching: dict[str, list[asyncio.Event]] = defaultdict(list)
        self._lock = asyncio.Lock()

    async def _get_publisher(self) -> Any:
        async with self._lock:
            if self._publisher is None:
                if urlsplit(self.conf.broker_url).scheme == "memory":
                    publisher: Any = _ThreadedPublisher(self.conf)
                else:
                    publisher = AsyncAmqpPublisher(self.conf.broker_url, self.conf)
                await publisher.connect()
                self._publisher = publisher
        return self._publisher

    @property
    def store(self) -> ResultStore:
        if self._store is None:
            self._store = open_store(self.conf)
        return self._store

    async def submit(self, name: str, *args: Any, kwargs: dict[str, Any] | None = None,
                     **options: Any) -> AsyncTaskResult:
        """Send task ``name``; returns once RabbitMQ has confirmed it."""
        retry = options.pop("retry", True)
        policy = RetryPolicy.from_mapping(options.pop("retry_policy", None))
        task = self.app.tasks.get(name) if self.app is not None else None
        message = build_message(name, args, kwargs or {}, options, self.conf,
                                task.options if task else None)
        await self.send([message], retry, policy)
        return AsyncTaskResult(message.id, self, ignored=message.ignore_result)

    async def send(self, messages: Sequence[TaskMessage], retry: bool = True,
                   policy: RetryPolicy | None = None) -> None:
        routed = [(m.queue, m.encode()) for m in messages]
        intervals = iter((policy or RetryPolicy()).intervals()) if retry else iter(())
        while True:
            try:
                publisher = await self._get_publisher()
                await publisher.publish(routed, self.conf.broker_confirm_timeout)
                break
            except BrokerUnavailable:
                pause = next(intervals, None)
                if pause is None:
                    raise
                await asyncio.sleep(pause)
                routed = resent(routed)
        if self.conf.task_track_pending:
            self._record_pending(messages)

    def _record_pending(self, messages: Sequence[TaskMessage]) -> None:
        rows = pending_changes(messages)
        if rows:
            if self._pending is None:
                self._pending = PendingWriter(self.store)
            self._pending.add(rows)

    def AsyncResult(self, task_id: str) -> AsyncTaskResult:  # noqa: N802 - Celery's name
        return AsyncTaskResult(task_id, self)

    # -- completion notices ---------------------------------------------------------
    async def _watch(self, task_id: str) -> asyncio.Event:
        if self._events is None:
            publisher = await self._get_publisher()
            self._events = await publisher.subscribe_events(self._on_notice)
        event = asyncio.Event()
        self._watching[task_id].append(event)
        return event

    def _unwatch(self, task_id: str, event: asyncio.Event) -> None:
        events = self._watching.get(task_id, [])
        if event in events:
            events.remove(event)
        if not events:
            self._watching.pop(task_id, None)

    def _on_notice(self, body: bytes) -> None:
        for task_id in decode_notice(body):
            for event in self._watching.get(task_id, ()):
                event.set()

    async def aclose(self) -> None:
        if self._pending is not None:
            await asyncio.to_thread(self._pending.flush)
            self._pending = None
        if self._events is not None:
            await self._events.close()
            self._events = None
        if self._publisher is not None:
            await self._publisher.close()
            self._publisher = None
        if self._store is not None:
            self._store.close()
            self._store = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncTaskResult:
    """The awaitable twin of :class:`hutch.AsyncResult` (``ignored`` as there)."""

    def __init__(self, id: str, client: AsyncClient, *,  # noqa: A002
                 ignored: bool = False) -> None:
        self.id = id
        self.client = client
        self.ignored = ignored

    async def _record(self) -> Any:
        return await asyncio.to_thread(self.client.store.get, self.id)

    async def state(self) -> str:
        record = await self._record()
        return record.state if record else PENDING

    async def ready(self) -> bool:
        return (await self.state()) in READY_STATES

    async def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        if self.ignored:
            return None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        event = await self.client._watch(self.id)
        try:
            while True:
                record = await self._record()
                if record is not None and record.state in READY_STATES:
                    break
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"task {self.id} not ready after {timeout} s")
                try:
                    await asyncio.wait_for(event.wait(), FALLBACK_RECHECK if remaining is None
                                           else min(remaining, FALLBACK_RECHECK))
                except asyncio.TimeoutError:
                    pass
                event.clear()
        finally:
            self.client._unwatch(self.id, event)
        if record.state == SUCCESS:
            return decode_result(record, self.client.conf.accept_content)
        if not propagate:
            return rebuild_exception(record) if record.state == FAILURE else None
        if record.state == REVOKED:
            raise TaskRevokedError(f"task {self.id} was revoked: {record.exception_message or ''}")
        raise rebuild_exception(record)

    def __await__(self):
        return self.get().__await__()

    def __repr__(self) -> str:
        return f"<AsyncTaskResult {self.id}>"
