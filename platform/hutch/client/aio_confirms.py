"""``AsyncClient`` submits handed to aio-pika without awaiting RabbitMQ's confirm
(``broker_confirm_wait`` off): the asyncio twin of :mod:`hutch.client.confirms`.

The same rules, in the event loop instead of threads: a confirmed submit gets its
PENDING row; one whose connection dropped first is published again by an asyncio
task with the call's ``retry_policy``; one nacked, returned as unroutable or out of
retries is logged at ERROR with its task ids and kept on its handle
(``await r.confirmed()`` and ``await r.get()`` raise it). At most
:data:`~hutch.client.confirms.WINDOW` submits await their confirms at once; one more
waits for room (up to ``broker_confirm_timeout``, then PublishError).
``await client.flush()`` awaits every one; ``aclose()`` and ``async with`` call it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Protocol

from ..errors import BrokerUnavailable, PublishError
from ..messages import TaskMessage, resent
from .base import Routed, next_pause
from .confirms import WINDOW, Bookkeeping, Handed, window_full


class AsyncPublisher(Protocol):
    """What the tracker needs of ``hutch.brokers.amqp.aio.AsyncAmqpPublisher``."""

    async def publish(self, messages: Routed, timeout: float | None = None,
                      events: Sequence[bytes] = ()) -> None: ...

    async def publish_later(self, messages: Routed,
                            events: Sequence[bytes] = ()) -> asyncio.Future[None]: ...


GetPublisher = Callable[[], Awaitable[AsyncPublisher]]


async def publish_retrying_async(publisher: GetPublisher, routed: Routed,
                                 pauses: Iterator[float], timeout: float,
                                 events: Sequence[bytes] = ()) -> Routed:
    """:func:`hutch.client.base.publish_retrying` awaited: publish and await the
    confirms, retrying while the broker is unreachable (``events`` go with the first
    attempt only); what was published last."""
    while True:
        try:
            await (await publisher()).publish(routed, timeout, events=events)
            return routed
        except BrokerUnavailable as exc:
            await asyncio.sleep(next_pause(pauses, exc))
            routed, events = resent(routed), []


class AsyncUnconfirmed(Handed):
    """A submit of ``AsyncClient`` whose confirm has not come yet, awaited by coroutines."""

    __slots__ = ()
    _flag = asyncio.Event

    async def confirmed(self, timeout: float | None = None) -> bool:
        """True once confirmed, False if ``timeout`` ran out first; raises the error
        that made the publish fail for good."""
        if not self._settled.is_set():
            try:
                await asyncio.wait_for(self._settled.wait(), timeout)
            except asyncio.TimeoutError:
                return False
        return self.outcome()


class AsyncConfirmTracker(Bookkeeping[AsyncUnconfirmed]):
    """Keeps one ``AsyncClient``'s handed-over submits until each is confirmed or failed.
    Used from one event loop (the client's)."""

    def __init__(self, publisher: GetPublisher,
                 on_confirmed: Callable[[AsyncUnconfirmed], None],
                 confirm_timeout: float) -> None:
        """``publisher``: awaits the client's publisher (opened on first use);
        ``on_confirmed`` runs in the event loop for each confirmed submit."""
        super().__init__(on_confirmed)
        self._publisher = publisher
        self._confirm_timeout = confirm_timeout
        self._room = asyncio.BoundedSemaphore(WINDOW)
        self._drained = asyncio.Event()
        self._drained.set()
        self._resending: set[asyncio.Task[None]] = set()

    async def hand_over(self, routed: Routed, messages: Sequence[TaskMessage],
                        pauses: Iterator[float], events: Sequence[bytes] = ()
                        ) -> AsyncUnconfirmed:
        """Publish without awaiting the confirm; raises PublishError when the window
        stays full for ``broker_confirm_timeout``, and what opening the channel raises
        (BrokerUnavailable: the caller then publishes as a waited submit would)."""
        if not self._room.locked():
            await self._room.acquire()  # room: at once, without wait_for's task
        else:
            try:
                await asyncio.wait_for(self._room.acquire(), self._confirm_timeout)
            except asyncio.TimeoutError:
                raise window_full(self._confirm_timeout) from None
        entry = AsyncUnconfirmed(routed, messages, pauses)
        self._open.add(entry)
        self._drained.clear()
        try:
            answer = await (await self._publisher()).publish_later(routed, events)
        except BaseException as exc:
            self._close(entry, exc)
            raise
        answer.add_done_callback(lambda done: self._answered(entry, _error_of(done)))
        return entry

    async def flush(self, timeout: float | None = 10.0) -> bool:
        """Await every submit handed over so far being confirmed or failed for good."""
        if not self._drained.is_set():
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except asyncio.TimeoutError:
                return False
        return True

    def _close(self, entry: AsyncUnconfirmed, error: BaseException | None) -> None:
        entry.finish(error)
        self._open.discard(entry)
        if not self._open:
            self._drained.set()
        self._room.release()

    # -- publishing again after a lost connection (an asyncio task each) ----------------
    def _publish_again(self, entry: AsyncUnconfirmed, lost: BrokerUnavailable) -> None:
        task = asyncio.get_running_loop().create_task(self._resend(entry, lost))
        self._resending.add(task)
        task.add_done_callback(self._resending.discard)

    async def _resend(self, entry: AsyncUnconfirmed, lost: BrokerUnavailable) -> None:
        """An awaited publish with the call's remaining retry policy, as ``submit()``
        retries one (after the wait the lost connection costs, as a copy)."""
        try:
            await asyncio.sleep(next_pause(entry.pauses, lost))
            await publish_retrying_async(self._publisher, resent(entry.routed), entry.pauses,
                                         self._confirm_timeout)
        except BaseException as exc:  # every one settles the submit; a cancel goes on
            self._republished(entry, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            self._republished(entry, None)


def _error_of(done: asyncio.Future[None]) -> BaseException | None:
    """The publish's error: None once confirmed (a cancelled one, by a loop shutting
    down, failed)."""
    if done.cancelled():
        return PublishError("publish cancelled before RabbitMQ confirmed it")
    return done.exception()
