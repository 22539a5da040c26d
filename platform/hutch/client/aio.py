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
from collections.abc import Iterator, Sequence
from typing import Any

from ..brokers.base import EVERY_KEY, NOTICE_EVERYONE, TASK_EVENTS
from ..brokers.factory import open_async_broker
from ..call_options import RetryPolicy
from ..errors import BrokerUnavailable
from ..events import joined
from ..logs import get_logger
from ..messages import TaskMessage, decode_notice
from ..workflows.apply import handle
from ..workflows.canvas import Signature
from .aio_confirms import AsyncConfirmTracker, AsyncUnconfirmed, publish_retrying_async
from .aio_handles import AsyncGroupResult, AsyncTaskResult
from .base import BaseClient, Routed
from .waiter import WIDE_LINGER

__all__ = ["AsyncClient", "AsyncGroupResult", "AsyncTaskResult"]

AsyncHandle = AsyncTaskResult | AsyncGroupResult

log = get_logger("hutch.client")


class AsyncClient(BaseClient):
    """``AsyncClient(broker=..., backend=...)``; use as ``async with`` or call ``aclose()``."""

    _publisher: Any = None
    _events: Any = None
    _wide: Any = None
    """The subscription to every notice (hutch.client.waiter), while a wait needs it."""
    _wide_closer: asyncio.TimerHandle | None = None
    _confirms: AsyncConfirmTracker | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watching: dict[str, list[asyncio.Event]] = defaultdict(list)
        self._opening = asyncio.Lock()
        self._wide_waits = 0

    async def _get_publisher(self) -> Any:
        async with self._opening:
            if self._publisher is None:
                publisher = open_async_broker(self.conf)
                await publisher.connect()
                self._publisher = publisher
        return self._publisher

    @property
    def confirms(self) -> AsyncConfirmTracker:
        """The submits handed over without awaiting their confirms (``broker_confirm_wait``
        off: hutch.client.aio_confirms)."""
        if self._confirms is None:
            self._confirms = AsyncConfirmTracker(self._get_publisher, self._confirmed_later,
                                                 self.conf.broker_confirm_timeout)
        return self._confirms

    # -- submitting ---------------------------------------------------------------
    async def submit(self, name: str, *args: Any, kwargs: dict[str, Any] | None = None,
                     **options: Any) -> AsyncTaskResult:
        """Send task ``name``; returns once RabbitMQ has confirmed it (as ``Client.submit``),
        or with ``broker_confirm_wait`` off once aio-pika has it (``await r.confirmed()``)."""
        message, retry, policy = self._submission(name, args, kwargs, options)
        if self.conf.broker_confirm_wait:
            await self.send([message], retry, policy)
            unconfirmed = None
        else:
            unconfirmed = await self._hand_over(message, retry, policy)
        return AsyncTaskResult(message.id, self, ignored=message.ignore_result,
                               unconfirmed=unconfirmed, sent_here=True)

    async def _hand_over(self, message: TaskMessage, retry: bool,
                         policy: RetryPolicy) -> AsyncUnconfirmed | None:
        """``submit()``'s publish handed to aio-pika with its task-sent event, as
        ``Client._submit_one`` hands it to pika: after_task_publish at the hand-over,
        the PENDING row at the confirm. A publisher that cannot open now is retried
        at once as an awaited submit is (then there is nothing left to track)."""
        routed = self._before_publish(self._routed([message], False), retry, policy)
        pauses = self._pauses(retry, policy)
        events = self._sent_events([message])
        try:
            unconfirmed = await self.confirms.hand_over(routed, [message], pauses, events)
        except BrokerUnavailable:  # nothing was sent: the awaited publish sends it all
            await self._publish_waiting([message], routed, pauses, events)
            return None
        self._after_publish(routed)
        await asyncio.sleep(0)  # the send is written while the caller goes on
        return unconfirmed

    def _confirmed_later(self, unconfirmed: AsyncUnconfirmed) -> None:
        """A handed-over submit was confirmed: its PENDING rows, as after an awaited one."""
        self._sent(unconfirmed.messages)

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
        await self._publish_waiting(messages, routed, self._pauses(retry, policy),
                                    self._sent_events(messages))

    async def _publish_waiting(self, messages: Sequence[TaskMessage], routed: Routed,
                               pauses: Iterator[float], events: list[bytes]) -> None:
        routed = await publish_retrying_async(self._get_publisher, routed, pauses,
                                              self.conf.broker_confirm_timeout, events)
        self._sent(messages)
        self._after_publish(routed)

    def _sent_events(self, messages: Sequence[TaskMessage]) -> list[bytes]:
        """The task-sent events of ``messages`` as one broker message, to go just ahead
        of them on the channel; none while no reader is bound (the publisher's heard)."""
        publisher = self._publisher
        if publisher is not None and not publisher.heard(TASK_EVENTS):
            return []
        bodies = self._sent_bodies(messages)
        return [joined(bodies)] if bodies else []

    async def flush(self, timeout: float | None = 10.0) -> bool:
        """Await everything submitted so far being confirmed by RabbitMQ (or failed for
        good, ``broker_confirm_wait`` off) and its PENDING row written."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self._confirms is not None and not await self._confirms.flush(timeout):
            return False
        left = None if timeout is None else max(0.0, timeout - (loop.time() - started))
        return await asyncio.to_thread(self._flush_pending, left)

    # -- results --------------------------------------------------------------------
    def AsyncResult(self, task_id: str) -> AsyncTaskResult:  # noqa: N802 - Celery's name
        return AsyncTaskResult(task_id, self)

    def _task_handle(self, task_id: str, parent: AsyncHandle | None) -> AsyncHandle:
        return AsyncTaskResult(task_id, self, parent, sent_here=True)

    def _group_handle(self, group_id: str, members: list[AsyncHandle],
                      parent: AsyncHandle | None) -> AsyncHandle:
        return AsyncGroupResult(group_id, members, self, parent)

    # -- completion notices ---------------------------------------------------------
    async def _watch_many(self, task_ids: list[str], own: bool = False) -> asyncio.Event:
        """One event set when any of ``task_ids`` is announced complete; ``own``: every
        one was sent by this client, else every notice is listened to until
        :meth:`_unwatch_many` (hutch.client.waiter)."""
        if self._events is None:
            publisher = await self._get_publisher()
            async with self._opening:
                if self._events is None:
                    self._events = await publisher.subscribe_notices(
                        self._on_notice, (self.notice_key, NOTICE_EVERYONE))
        if not own:
            await self._widen()
        event = asyncio.Event()
        for task_id in task_ids:
            self._watching[task_id].append(event)
        return event

    def _unwatch_many(self, task_ids: list[str], event: asyncio.Event,
                      own: bool = False) -> None:
        for task_id in task_ids:
            events = self._watching.get(task_id, [])
            if event in events:
                events.remove(event)
            if not events:
                self._watching.pop(task_id, None)
        if not own:
            self._wide_waits -= 1
            if not self._wide_waits and self._wide is not None:
                self._wide_closer = asyncio.get_running_loop().call_later(
                    WIDE_LINGER, lambda: asyncio.ensure_future(self._narrow()))

    async def _widen(self) -> None:
        """Subscribed to every notice before this returns (see _watch_many)."""
        if self._wide_closer is not None:
            self._wide_closer.cancel()
            self._wide_closer = None
        if self._wide is None:
            publisher = await self._get_publisher()
            async with self._opening:
                if self._wide is None:
                    self._wide = await publisher.subscribe_notices(self._on_notice, (EVERY_KEY,))
        self._wide_waits += 1

    async def _narrow(self) -> None:
        """WIDE_LINGER after the last wait that needed every notice, unless one began."""
        if self._wide_waits or self._wide is None:
            return
        wide, self._wide, self._wide_closer = self._wide, None, None
        await wide.close()

    def _on_notice(self, body: bytes) -> None:
        for task_id in decode_notice(body):
            for event in self._watching.get(task_id, ()):
                event.set()

    async def aclose(self) -> None:
        """Await the outstanding confirms (``broker_confirm_wait`` off), write the PENDING
        rows, then close the connections."""
        if self._confirms is not None and not await self._confirms.flush(10.0):
            log.error("closing with task messages RabbitMQ has not confirmed",
                      count=self._confirms.outstanding)
        await asyncio.to_thread(self._close_results)
        if self._wide_closer is not None:
            self._wide_closer.cancel()
        if self._wide is not None:
            await self._wide.close()
            self._wide = None
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
