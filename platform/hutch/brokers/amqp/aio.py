"""The asyncio side (aio-pika), for ``AsyncClient``: publish with confirms, receive notices.

Same names and declarations as the sync side (topology.py). Publishes are
persistent and mandatory on a confirm channel; concurrent awaits pipeline on
that channel's window, so many tasks submitting at once do not wait for each
other's confirms. The connection is plain (not "robust"): after a drop the next
``publish`` reconnects (to the next node of ``broker_url``) and redeclares, and the
caller's retry policy decides. A delay-ladder queue whose node is down is left out of
the declaration (brokers/amqp/publisher.py says why).

Event subscriptions hold a plain connection and an exclusive queue of their own:
when the connection drops they subscribe again, on the next node of ``broker_url``
(hutch.brokers.amqp.nodes), after the short capped delays of backoff.py, as the
sync side's subscribers do. aio-pika's robust connection was used before; it only
ever reconnects to the node it started on, so a client on a cluster went without
completion notices for as long as that one node was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aio_pika
import aio_pika.message
import aiormq.exceptions
from pamqp.commands import Basic

from ...config import Settings
from ...errors import (
    BrokerError,
    BrokerUnavailable,
    PublishError,
    QueueNodeDown,
    UnroutableError,
)
from ...logs import get_logger
from ...messages import Wire
from .. import base
from ..base import FanOutChannel
from ..routes import topology_for
from .backoff import Backoff
from .failures import connect_error
from .mismatch import tell_down, tell_up
from .nodes import Nodes
from .topology import Topology, declare_aio, declare_aio_skipping_down

log = get_logger("hutch.amqp")

T = TypeVar("T")



def allow_string_expiration() -> None:
    """AMQP's own expiration format is a string of milliseconds (Wire.expiration);
    aio-pika only converts numbers of seconds, which loses precision. Let strings
    through unchanged. Registered by the publisher's constructor, not on import, so a
    program importing hutch keeps aio-pika as shipped (as brokers.amqp.floats for pika)."""
    encode = aio_pika.message.encode_expiration
    if str not in encode.registry:
        encode.register(str)(_unchanged)


def _unchanged(value: str) -> str:
    return value

_UNAVAILABLE = (aiormq.exceptions.AMQPConnectionError, aiormq.exceptions.ChannelInvalidStateError,
                ConnectionError, OSError)
_OPEN_FAILED = (aiormq.exceptions.InvalidFrameError,)
"""What aiormq raises when RabbitMQ closes the connection while it is being opened
(e.g. a virtual host that does not exist): a hutch error like any failed connect."""


def message_for(wire: Wire, persistent: bool = True) -> aio_pika.Message:
    return aio_pika.Message(
        wire.body,
        headers=wire.headers,
        content_type=wire.content_type,
        content_encoding=wire.content_encoding,
        delivery_mode=(aio_pika.DeliveryMode.PERSISTENT if persistent
                       else aio_pika.DeliveryMode.NOT_PERSISTENT),
        priority=wire.priority,
        expiration=wire.expiration,  # type: ignore[arg-type]  # see allow_string_expiration
        message_id=wire.message_id,
        timestamp=int(time.time()),
        app_id="hutch",
    )


class AsyncAmqpPublisher:
    def __init__(self, url: str, settings: Settings, topology: Topology | None = None) -> None:
        self.url, self.settings = url, settings
        self._nodes = Nodes(url, settings, "async publisher")
        allow_string_expiration()
        self.topology = topology or topology_for(settings)
        self._lock = asyncio.Lock()
        self._conn: Any = None
        self._channel: Any = None
        self._declared: set[str] = set()
        self._unheard_at: float | None = None  # when RabbitMQ last returned a task-sent

    async def connect(self) -> None:
        """Open the connection and confirm channel; BrokerUnavailable if unreachable."""
        await self._ready()

    async def publish(self, messages: Sequence[tuple[str, Wire]],
                      timeout: float | None = None, events: Sequence[bytes] = ()) -> None:
        """Publish all and return once every one is confirmed. ``events`` (task-sent
        bodies, hutch.events) go to ``P.task-events`` just ahead of the messages on the
        same channel; losing one is logged at debug level and never raised."""
        if not messages:
            return
        limit = self.settings.broker_confirm_timeout if timeout is None else timeout
        sent = await self._start(messages, events)
        try:
            results = await asyncio.wait_for(sent, limit)
        except asyncio.TimeoutError:
            raise PublishError(f"{len(messages)} message(s) not confirmed within {limit:g}s "
                               f"by {self._masked}") from None
        await self._check(results, len(events))

    async def publish_later(self, messages: Sequence[tuple[str, Wire]],
                            events: Sequence[bytes] = ()) -> asyncio.Future[None]:
        """Start publishing (``events`` as in :meth:`publish`) and return without waiting
        for the confirms: once the channel is open and the routes declared, the sends are
        scheduled on it, in order. The future returned finishes once every message is
        confirmed, or raises what :meth:`publish` raises (BrokerUnavailable when the
        connection dropped first); nothing times it out. Opening and declaring raise
        here, as in :meth:`publish`."""
        sent = await self._start(messages, events)
        return asyncio.ensure_future(self._answer(sent, len(events)))

    async def _start(self, messages: Sequence[tuple[str, Wire]],
                     events: Sequence[bytes]) -> asyncio.Future[list[Any]]:
        """Open the channel, declare the routes, then schedule the sends: the future of
        their outcomes (events first), each a confirm or an exception."""
        try:
            channel = await self._ready()
            await self._declare(channel, sorted({route for route, _ in messages}))
        except Exception as exc:
            if not _connection_lost(exc):
                raise
            node = self._masked
            await self._forget_connection()
            self._nodes.failed()
            raise BrokerUnavailable(f"{node}: {type(exc).__name__}: {exc}") from exc
        notes = [self._send_event(channel, body) for body in events]
        sends = [self._send(channel, route, wire) for route, wire in messages]
        return asyncio.gather(*notes, *sends, return_exceptions=True)

    async def _answer(self, sent: Awaitable[list[Any]], events: int) -> None:
        await self._check(await sent, events)

    def heard(self, channel: FanOutChannel) -> bool:
        """As hutch.brokers.base.FanOut.heard: False for UNHEARD_PAUSE seconds after
        RabbitMQ returned a task-sent (published mandatory: no reader's queue bound)."""
        return not channel.probed or base.pause_over(self._unheard_at)

    async def _check(self, results: list[Any], events: int) -> None:
        """Returned events noted (heard), lost ones logged; the first failed message
        raised as a hutch error."""
        lost = [r for r in results[:events] if isinstance(r, BaseException)]
        if lost and all(_return_of(r) is not None for r in lost):
            self._unheard_at = time.monotonic()  # nobody reads task events now
        elif lost:
            log.debug("task events not published", lost=len(lost), error=str(lost[0]))
        errors = [r for r in results[events:] if isinstance(r, BaseException)]
        if errors:
            raise await self._map_error(errors[0])

    async def _send_event(self, channel: Any, body: bytes) -> None:
        exchange = await channel.get_exchange(self.topology.task_events_exchange, ensure=False)
        await exchange.publish(aio_pika.Message(
            body, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT, app_id="hutch",
            content_type="application/json"), routing_key="", mandatory=True)

    async def publish_notice(self, body: bytes, key: str) -> None:
        """Best-effort notice to ``P.notices`` under ``key`` (non-persistent, not
        confirmed)."""
        try:
            channel = await self._ready()
            exchange = await channel.get_exchange(self.topology.notices_exchange, ensure=False)
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                                       app_id="hutch")
            await exchange.publish(message, routing_key=key)
        except (*_UNAVAILABLE, BrokerError, aiormq.exceptions.AMQPError) as exc:
            log.debug("event not published", error=f"{type(exc).__name__}: {exc}")

    async def subscribe_notices(self, on_notice: Callable[[bytes], Any],
                               keys: Sequence[str]) -> AsyncNoticeSubscription:
        """Deliver every notice published under one of ``keys`` after this returns to
        ``on_notice`` (sync or async)."""
        subscription = AsyncNoticeSubscription(self.url, self.settings, self.topology, on_notice,
                                              keys)
        await subscription.start()
        return subscription

    async def close(self) -> None:
        await self._forget_connection()

    # --- internals ------------------------------------------------------------------

    async def _ready(self) -> Any:
        async with self._lock:
            if self._channel is not None and not self._channel.is_closed:
                return self._channel
            await self._forget_connection_locked()
            return await _on_first_answering(self._nodes, self._open,
                                             self._forget_connection_locked, "connect to")

    async def _open(self) -> Any:
        """Connect to the current node, declare the shared topology (a ladder queue whose
        node is down left out) and open the confirm channel."""
        self._conn = await aio_pika.connect(**self._nodes.aio_kwargs())
        downs = await declare_aio_skipping_down(self._conn, self.topology.shared_steps(),
                                                self.topology.prefix)
        for down in downs:
            tell_down(down, "publishing without the delay queues on that node; countdowns "
                      "that need one are returned unroutable until it is back",
                      key=self.topology.ladder_key, url=self._masked)
        if not downs:
            tell_up([self.topology.ladder_key])
        channel = await self._conn.channel(publisher_confirms=True, on_return_raises=True)
        self._channel = channel
        return channel

    @property
    def _masked(self) -> str:
        return self._nodes.masked

    async def _declare(self, channel: Any, routes: list[str]) -> None:
        for route in routes:
            if route not in self._declared:
                try:
                    await declare_aio(channel, self.topology.route_steps(route),
                                      self.topology.prefix)
                except QueueNodeDown as exc:
                    self._channel = None  # the refusal closed it: the next publish reopens
                    tell_down(exc, "publishes to it fail (retried by the caller's retry "
                              "policy)", url=self._masked)
                    raise
                self._declared.add(route)

    async def _send(self, channel: Any, route: str, wire: Wire) -> Any:
        name, routing_key = self.topology.target(route, wire)
        exchange = await channel.get_exchange(name, ensure=False)
        return await exchange.publish(message_for(wire), routing_key=routing_key, mandatory=True)

    async def _map_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, aiormq.exceptions.DeliveryError):
            ret = _return_of(exc)
            if ret is not None:
                return UnroutableError(f"unroutable: {ret.reply_code} {ret.reply_text} "
                                       f"(exchange {ret.exchange!r}, "
                                       f"routing key {ret.routing_key!r})")
            return PublishError(f"broker refused a message: {exc}")
        if _connection_lost(exc):
            await self._forget_connection()
            return BrokerUnavailable(f"{self._masked}: {type(exc).__name__}: {exc}")
        if isinstance(exc, aiormq.exceptions.ChannelClosed):
            self._channel = None
            return BrokerError(f"channel closed by broker: {exc}")
        return exc

    async def _forget_connection(self) -> None:
        async with self._lock:
            await self._forget_connection_locked()

    async def _forget_connection_locked(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        self._declared.clear()
        if conn is not None and not conn.is_closed:
            try:
                await conn.close()
            except Exception as exc:  # noqa: BLE001 - already broken
                log.debug("async publisher close failed", error=str(exc))


def _connection_lost(exc: BaseException) -> bool:
    """Whether a call failed because its connection went: a connection error, or aiormq's
    answer to a call whose connection closed under it (the call cancelled, or a bare
    Exception raised from that cancel)."""
    return isinstance(exc, (*_UNAVAILABLE, asyncio.CancelledError)) \
        or isinstance(exc.__cause__, asyncio.CancelledError)


class AsyncNoticeSubscription:
    """An exclusive queue bound to ``P.notices`` under ``keys``, on one node at a time (it
    moves to the next when its connection drops: the module docstring); ``await close()``
    to stop."""

    def __init__(self, url: str, settings: Settings, topology: Topology,
                 on_notice: Callable[[bytes], Any], keys: Sequence[str]) -> None:
        self._url, self._settings, self._topology = url, settings, topology
        self._keys = tuple(keys)
        self._nodes = Nodes(url, settings, "async events")
        self._on_notice = on_notice
        self._conn: Any = None
        self._channel: Any = None
        self._closing = False
        self._backoff = Backoff()
        self._moving: asyncio.Task[None] | None = None

    @property
    def node(self) -> str:
        """The node subscribed to now (or tried next), password masked."""
        return self._nodes.masked

    async def start(self) -> None:
        """Subscribe on the first node that answers (BrokerUnavailable naming every
        node when none does)."""
        await _on_first_answering(self._nodes, self._subscribe, self._drop,
                                  "subscribe to events at")

    async def _subscribe(self) -> None:
        conn = self._conn = await aio_pika.connect(**self._nodes.aio_kwargs())
        channel = self._channel = await conn.channel()
        await declare_aio(channel, self._topology.fanout_steps(), self._topology.prefix)
        name = f"{self._topology.notices_exchange}.{uuid.uuid4().hex[:12]}"
        queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
        for key in self._keys:
            await queue.bind(self._topology.notices_exchange, routing_key=key)
        await queue.consume(self._deliver, no_ack=True)
        conn.close_callbacks.add(self._on_lost)
        channel.close_callbacks.add(self._on_channel_lost)

    def _on_channel_lost(self, _channel: Any, exc: BaseException | None) -> None:
        """The broker closed the channel alone (a channel error; the connection stays
        up): its queue is gone with it, so subscribe again. A channel closed with its
        connection is :meth:`_on_lost`'s."""
        if self._closing or self._moving is not None \
                or not isinstance(exc, aiormq.exceptions.AMQPChannelError):
            return
        log.warning("event subscription's channel closed; subscribing again",
                    url=self._nodes.masked, error=f"{type(exc).__name__}: {exc}")
        self._moving = asyncio.get_running_loop().create_task(self._again())

    async def _again(self) -> None:
        await self._drop()  # _on_lost leaves a connection it no longer holds alone
        await self._move()

    def _on_lost(self, conn: Any, exc: BaseException | None) -> None:
        """The connection closed: unless this subscription is closing, move on."""
        if self._closing or conn is not self._conn or self._moving is not None:
            return
        log.warning("event subscription lost; subscribing on the next node",
                    url=self._nodes.masked, error=f"{type(exc).__name__}: {exc}")
        self._nodes.failed()
        self._moving = asyncio.get_running_loop().create_task(self._move())

    async def _move(self) -> None:
        """Subscribe again, from the next node, until one answers or close() is called."""
        try:
            while not self._closing:
                await asyncio.sleep(self._backoff.next_delay())
                try:
                    await self.start()
                except BrokerError as exc:
                    log.debug("event subscription not restored yet", error=str(exc))
                    continue
                self._backoff.reset()
                log.info("event subscription restored", url=self._nodes.masked)
                return
        finally:
            self._moving = None

    async def _drop(self) -> None:
        """Close a connection that failed half-way through subscribing."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed:
            try:
                await conn.close()
            except Exception as exc:  # noqa: BLE001 - already broken
                log.debug("event subscription close failed", error=str(exc))

    async def _deliver(self, message: Any) -> None:
        try:
            result = self._on_notice(message.body)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("event callback failed")

    async def close(self) -> None:
        self._closing = True
        moving, self._moving = self._moving, None
        if moving is not None:
            moving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await moving
        await self._drop()


async def _on_first_answering(nodes: Nodes, open_one: Callable[[], Awaitable[T]],
                              undo: Callable[[], Awaitable[None]], doing: str) -> T:
    """``open_one()`` on each node in turn, from the current one, until one answers
    (``undo()`` after each failure); BrokerUnavailable naming every node when none does."""
    for untried in range(len(nodes) - 1, -1, -1):
        try:
            return await open_one()
        except (*_UNAVAILABLE, *_OPEN_FAILED, asyncio.TimeoutError) as exc:
            await undo()
            nodes.failed()
            if not untried:
                raise connect_error(exc, nodes.every, doing) from exc
    raise AssertionError("unreachable")


def _return_of(exc: BaseException) -> Basic.Return | None:
    """The basic.return behind a failed confirmed publish (RabbitMQ routed it to no
    queue), if that is what failed it."""
    if not isinstance(exc, aiormq.exceptions.DeliveryError):
        return None
    returned = getattr(getattr(exc, "message", None), "delivery", None)
    ret = returned if isinstance(returned, Basic.Return) else getattr(exc, "frame", None)
    return ret if isinstance(ret, Basic.Return) else None
