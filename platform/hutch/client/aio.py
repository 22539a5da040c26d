"""AsyncClient: ``await client.submit(...)``, workflows and awaitable results, for asyncio
applications.

Publishing uses aio-pika with publisher confirms, so many concurrent submits
share one connection and pipeline their confirms. Result rows are read with
the same SQL store as the synchronous client, in a worker thread, and waiting
is woken by the workers' completion notices rather than by polling. Everything
but the I/O is in :mod:`hutch.client.base`, shared with ``Client``.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ..brokers.factory import open_async_broker
from ..call_options import RetryPolicy
from ..errors import BrokerUnavailable
from ..events import joined
from ..messages import TaskMessage, decode_notice, resent
from ..workflows.apply import handle
from ..workflows.canvas import Signature
from .aio_handles import AsyncGroupResult, AsyncTaskResult
from .base import BaseClient

__all__ = ["AsyncClient", "AsyncGroupResult", "AsyncTaskResult"]

AsyncHandle = AsyncTaskResult | AsyncGroupResult


class AsyncClient(BaseClient):
    """``AsyncClient(broker=..., backend=...)``; use as ``async with`` or call ``aclose()``."""

    _publisher: Any = None
    _events: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watching: dict[str, list[asyncio.Event]] = defaultdict(list)
        self._opening = asyncio.Lock()

    async def _get_publisher(self) -> Any:
        async with self._opening:
            if self._publisher is None:
                publisher = open_async_broker(self.conf)
                await publisher.connect()
                self._publisher = publisher
        return self._publisher

    # -- submitting ---------------------------------------------------------------
    async def submit(self, name: str, *args: Any, kwargs: dict[str, Any] | None = None,
                     **options: Any) -> AsyncTaskResult:
        """Send task ``name``; returns once RabbitMQ has confirmed it (as ``Client.submit``)."""
        message, retry, policy = self._submission(name, args, kwargs, options)
        await self.send([message], retry, policy)
        return AsyncTaskResult(message.id, self, ignored=message.ignore_result)

    async def send_signature(self, sig: Signature) -> AsyncTaskResult:
        return await self.submit(sig.task, *sig.args, kwargs=sig.kwargs, **sig.options)

    async def apply_workflow(self, sig: Signature, args: tuple[Any, ...] = (),
                             kwargs: dict[str, Any] | None = None,
                             options: dict[str, Any] | None = None) -> AsyncHandle:
        """Send a chain, group, chord or chunks, as ``Client.apply_workflow``; returns an
        ``AsyncTaskResult`` (a chain's last task, a chord's body) or an ``AsyncGroupResult``."""
        out = self._workflow(sig, args, kwargs, options)
        if out.plan.groups:
            await asyncio.to_thread(self.store.insert_groups, out.plan.groups)
        await self.send(out.plan.messages, out.retry, out.policy)
        return handle(out.sig, self)

    async def send(self, messages: Sequence[TaskMessage], retry: bool = True,
                   policy: RetryPolicy | None = None, *, as_republished: bool = False) -> None:
        """Publish already-built messages and await RabbitMQ's confirms (as ``Client.send``)."""
        routed = self._before_publish(self._routed(messages, as_republished), retry, policy)
        pauses = self._pauses(retry, policy)
        bodies = self._sent_bodies(messages)
        events = [joined(bodies)] if bodies else []  # one message ahead of the tasks
        while True:
            try:
                publisher = await self._get_publisher()
                await publisher.publish(routed, self.conf.broker_confirm_timeout,
                                        events=events)
                break
            except BrokerUnavailable as exc:
                await asyncio.sleep(self._next_pause(pauses, exc))
                routed, events = resent(routed), []  # events went with the first attempt
        self._sent(messages)
        self._after_publish(routed)

    # -- results --------------------------------------------------------------------
    def AsyncResult(self, task_id: str) -> AsyncTaskResult:  # noqa: N802 - Celery's name
        return AsyncTaskResult(task_id, self)

    def _task_handle(self, task_id: str, parent: AsyncHandle | None) -> AsyncHandle:
        return AsyncTaskResult(task_id, self, parent)

    def _group_handle(self, group_id: str, members: list[AsyncHandle],
                      parent: AsyncHandle | None) -> AsyncHandle:
        return AsyncGroupResult(group_id, members, self, parent)

    # -- completion notices ---------------------------------------------------------
    async def _watch(self, task_id: str) -> asyncio.Event:
        return await self._watch_many([task_id])

    async def _watch_many(self, task_ids: list[str]) -> asyncio.Event:
        """One event set when any of ``task_ids`` is announced complete."""
        if self._events is None:
            publisher = await self._get_publisher()
            async with self._opening:
                if self._events is None:
                    self._events = await publisher.subscribe_events(self._on_notice)
        event = asyncio.Event()
        for task_id in task_ids:
            self._watching[task_id].append(event)
        return event

    def _unwatch_many(self, task_ids: list[str], event: asyncio.Event) -> None:
        for task_id in task_ids:
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
        await asyncio.to_thread(self._close_results)
        if self._events is not None:
            await self._events.close()
            self._events = None
        if self._publisher is not None:
            await self._publisher.close()
            self._publisher = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
