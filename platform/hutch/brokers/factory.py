"""Open a broker from its URL: the only place that maps broker URL schemes to classes
(``open_broker`` for threads, ``open_async_broker`` for asyncio)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config import Settings, mask_url
from ..errors import ConfigurationError
from ..messages import Wire
from .amqp.broker import AmqpBroker
from .base import TASK_EVENTS, Broker, FanOutChannel, SubscriptionHandle
from .memory import MemoryBroker
from .routes import route_options

if TYPE_CHECKING:
    from .amqp.aio import AsyncAmqpPublisher


def open_broker(settings: Settings) -> Broker:
    scheme = urlsplit(settings.broker_url).scheme
    if scheme == "memory":
        return MemoryBroker(settings.broker_url,
                            lambda route: route_options(settings, route).max_priority)
    if scheme in ("amqp", "amqps"):
        return AmqpBroker(settings.broker_url, settings)
    raise ConfigurationError(f"broker_url: unsupported scheme in {mask_url(settings.broker_url)!r}")



def open_async_broker(settings: Settings) -> AsyncAmqpPublisher | ThreadedAsyncBroker:
    """The asyncio side of the broker at ``settings.broker_url`` (for ``AsyncClient``):
    publish with confirms and subscribe to completion notices, awaited. Not connected
    yet: ``await connect()`` first."""
    scheme = urlsplit(settings.broker_url).scheme
    if scheme in ("amqp", "amqps"):
        # aio-pika is imported by asyncio apps only (a twentieth of a second a process)
        from .amqp.aio import AsyncAmqpPublisher

        return AsyncAmqpPublisher(settings.broker_url, settings)
    return ThreadedAsyncBroker(open_broker(settings))


class ThreadedAsyncBroker:
    """A synchronous broker (memory://: the demo and unit tests) behind the asyncio
    interface of :class:`AsyncAmqpPublisher`; blocking calls run in a thread."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def connect(self) -> None:
        return None

    async def publish(self, messages: Sequence[tuple[str, Wire]], timeout: float | None,
                      events: Sequence[bytes] = ()) -> None:
        """``events`` (task-sent bodies) are broadcast just ahead of the messages."""
        await asyncio.to_thread(self._publish, messages, timeout, events)

    def _publish(self, messages: Sequence[tuple[str, Wire]], timeout: float | None,
                 events: Sequence[bytes]) -> None:
        for body in events:
            self._broker.broadcast(TASK_EVENTS, body, probe=True)
        self._broker.publish(messages, timeout)

    def heard(self, channel: FanOutChannel) -> bool:
        return self._broker.heard(channel)

    async def subscribe_notices(self, on_notice: Callable[[bytes], Any],
                               keys: Sequence[str]) -> _ThreadedEvents:
        loop = asyncio.get_running_loop()

        def hand_over(body: bytes) -> None:  # from the broker's thread to this loop
            loop.call_soon_threadsafe(on_notice, body)

        return _ThreadedEvents(self._broker.subscribe_notices(hand_over, keys))

    async def close(self) -> None:
        self._broker.close()


class _ThreadedEvents:
    def __init__(self, handle: SubscriptionHandle) -> None:
        self._handle = handle

    async def close(self) -> None:
        self._handle.close()
