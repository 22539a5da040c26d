"""``AmqpBroker``: RabbitMQ behind hutch's Broker interface.

Composes the confirm-windowed publisher (one per process, created on first
use), a consumer per ``consume()`` call, and a fan-out subscriber per
``subscribe()`` call (events, control). Admin (queue stats by passive declare,
dead letters, purges, deleting a prefix's topology) and confirmed broadcasts use
a short-lived blocking connection; queue stats come from RabbitMQ's management API
first when ``broker_management_url`` is set (brokers/amqp/management.py).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import pika
import pika.exceptions

from ...config import Settings, mask_url
from ...errors import BrokerUnavailable, PublishError, QueueNodeDown
from ...logs import get_logger
from ...messages import Wire, replayable
from ..base import (
    EVERY_KEY,
    Broker,
    Confirmation,
    ConsumerHandle,
    Delivery,
    FanOutChannel,
    QueueStats,
    SubscriptionHandle,
)
from ..routes import topology_for
from .consumer import AmqpConsumer, wire_from
from .failures import connect_error
from .floats import allow_float_headers
from .management import ManagementApi
from .migration import Migration, migrate_route
from .mismatch import queue_node_down, tell_down
from .nodes import Nodes
from .params import parse_urls
from .publisher import Publisher
from .replies import AmqpInbox
from .subscriber import BroadcastSubscriber
from .topology import LADDER_TYPES, Topology, declare_blocking

log = get_logger("hutch.amqp")

T = TypeVar("T")


class AmqpBroker(Broker):
    def __init__(self, url: str, settings: Settings, topology: Topology | None = None) -> None:
        self.url = url
        self.settings = settings
        addresses = parse_urls(url)  # raises ConfigurationError for a bad URL
        self._masked = mask_url(url)
        self._management = (ManagementApi(settings.broker_management_url, addresses[0],
                                          settings.broker_connection_timeout)
                            if settings.broker_management_url else None)
        allow_float_headers()  # before any pika connection: dead_letters() decodes headers too
        self.topology = topology or topology_for(settings)
        self._lock = threading.Lock()
        self._publisher: Publisher | None = None
        self._publisher_pid = 0
        self._handles: list[AmqpConsumer | BroadcastSubscriber] = []
        self._admin_nodes = self._nodes("admin")
        """Shared by the short admin connections, so each starts on the node that last
        answered."""

    def __repr__(self) -> str:
        return f"<AmqpBroker {self._masked} prefix={self.topology.prefix!r}>"

    # --- Broker -------------------------------------------------------------------

    def declare(self, routes: Sequence[str]) -> None:
        """Declare each route (a worker's, as it starts). A route whose queue's node is
        down is said (once, naming both) and left to the consumer, which declares it
        when the node is back: the worker starts with its other routes. A queue with
        other arguments than the settings ask for raises QueueMismatchError."""
        publisher = self._get_publisher()
        for route in routes:
            try:
                publisher.declare([route], timeout=self.settings.broker_confirm_timeout)
            except QueueNodeDown as exc:
                tell_down(exc, "the worker starts without this route; its consumer declares "
                          "it once the node is back", route=route)

    def publish(self, messages: Sequence[tuple[str, Wire]], timeout: float | None = None) -> None:
        self._get_publisher().publish(messages, timeout)

    def publish_later(self, messages: Sequence[tuple[str, Wire]]) -> Confirmation:
        return self._get_publisher().publish_later(messages)

    def publish_dead(self, route: str, wire: Wire, timeout: float | None = None) -> None:
        self._get_publisher().publish([(route, wire)], timeout, dead=True)

    @property
    def publishing_node(self) -> str | None:
        with self._lock:
            publisher = self._publisher if self._publisher_pid == os.getpid() else None
        return publisher.node if publisher is not None else None

    def consume(self, routes: Sequence[str], prefetch: int,
                on_delivery: Callable[[Delivery], None]) -> ConsumerHandle:
        consumer = AmqpConsumer(self._nodes("worker"), self.topology, routes, prefetch,
                                on_delivery)
        self._track(consumer)
        return consumer

    # --- FanOut: an exchange P.<channel> per channel (topic when routed, else fanout) ---

    def broadcast(self, channel: FanOutChannel, body: bytes, key: str = "",
                  probe: bool = False) -> bool:
        """Confirmed channels over a short-lived confirmed channel (rare, must not be
        lost silently); the others through the publisher, fired and forgotten."""
        exchange = self.topology.fanout_exchange(channel.name)
        if channel.confirmed:
            self._broadcast_confirmed(exchange, body, key)
            return True
        try:
            self._get_publisher().publish_fanout(exchange, body, key,
                                                 mandatory=probe and channel.probed)
        except BrokerUnavailable as exc:
            log.debug("broadcast not published", channel=channel.name, error=str(exc))
            return False
        return True

    def heard(self, channel: FanOutChannel) -> bool:
        publisher = self._publisher
        return publisher is None or publisher.heard(self.topology.fanout_exchange(channel.name))

    def _broadcast_confirmed(self, exchange: str, body: bytes, key: str) -> None:
        with self._admin_channel() as channel:
            try:
                declare_blocking(channel, self.topology.fanout_steps())
                channel.confirm_delivery()
                channel.basic_publish(exchange, key, body,
                                      pika.BasicProperties(delivery_mode=1, app_id="hutch",
                                                           content_type="application/json"))
            except pika.exceptions.AMQPError as exc:
                raise PublishError(f"broadcast on {exchange} at {self._masked} failed: "
                                   f"{type(exc).__name__}: {exc}") from exc

    def subscribe(self, channel: FanOutChannel, callback: Callable[[bytes], None],
                  keys: Sequence[str] = (EVERY_KEY,)) -> SubscriptionHandle:
        subscriber = BroadcastSubscriber(self._nodes(channel.name), self.topology, callback,
                                     self.topology.fanout_exchange(channel.name),
                                     keys if channel.routed else ("",)).start()
        self._track(subscriber)
        return subscriber

    # --- Replies: brokers/amqp/replies.py ------------------------------------------------

    def open_inbox(self) -> AmqpInbox:
        return AmqpInbox(self._nodes("inbox"))

    def reply(self, to: str, body: bytes) -> None:
        try:
            self._get_publisher().publish_reply(to, body)
        except Exception as exc:  # noqa: BLE001 - a reply never fails the worker
            log.warning("control reply not sent", reply_to=to,
                        error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        with self._lock:
            publisher, self._publisher = self._publisher, None
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.stop() if isinstance(handle, AmqpConsumer) else handle.close()
        if publisher is not None and self._publisher_pid == os.getpid():
            publisher.close()

    # --- Admin: passive declares and basic.get on short-lived connections ---------------

    def queue_stats(self, route: str) -> QueueStats:
        """Ready, unacked and consumers of ``P.R`` from the management API when it is
        set and answers; else by passive declare, unacked None (AMQP cannot count them).
        A classic queue whose cluster node is down says so (``node_down``) instead of
        reading as empty."""
        queue = self.topology.names(route).queue
        stats = self._management.queue_stats(queue) if self._management else None
        if stats is not None:
            return stats
        try:
            ready, consumers = self._passive(queue)
        except QueueNodeDown as exc:
            return QueueStats(ready=0, unacked=None, consumers=0, node_down=exc.node)
        return QueueStats(ready=ready, unacked=None, consumers=consumers)

    def dead_letter_count(self, route: str) -> int:
        """Messages waiting in the route's dead-letter queue ``P.R.dead``."""
        return self._passive(self._dead_queue(route))[0]

    def dead_letters(self, route: str, limit: int = 100) -> list[Wire]:
        """Peek: basic.get without ack; closing the channel puts them all back in order."""
        def peek(channel: Any) -> list[Wire]:
            out: list[Wire] = []
            for _ in range(limit):
                method, props, body = channel.basic_get(self._dead_queue(route))
                if method is None:
                    break
                out.append(wire_from(props, body))
            return out
        return self._on_queue(peek, missing=[])

    def replay_dead(self, route: str, task_id: str | None = None,
                    before: Callable[[Wire], None] | None = None) -> list[Wire]:
        waiting = self._passive(self._dead_queue(route))[0]
        replayed: list[Wire] = []
        with self._admin_channel() as channel:
            keep = []
            for _ in range(waiting):  # bounded: requeued non-matches are not seen twice
                method, props, body = channel.basic_get(self._dead_queue(route))
                if method is None:
                    break
                wire = wire_from(props, body)
                if task_id is not None and wire.message_id != task_id:
                    keep.append(method.delivery_tag)
                    continue
                clean = replayable(wire)
                if before is not None:
                    before(clean)
                self.publish([(wire.headers.get("queue") or route, clean)])  # confirmed first
                channel.basic_ack(method.delivery_tag)
                replayed.append(clean)
            for tag in keep:
                channel.basic_nack(tag, requeue=True)
        return replayed

    def delayed_count(self) -> int:
        """The messages of every delay ladder queue (``P.delay.*``, and the quorum
        ladder's ``P.delay.quorum.*`` if it was ever declared), by passive declares on
        one connection (a queue never declared counts 0 and costs a fresh channel);
        QueueNodeDown if a ladder queue's node is down."""
        with self._admin_connection() as conn:
            channel, total = conn.channel(), 0
            for kind in LADDER_TYPES:
                queues = self.topology.ladder_queues(kind)
                for at, queue in enumerate(queues):
                    try:
                        total += channel.queue_declare(queue, passive=True).method.message_count
                    except pika.exceptions.ChannelClosedByBroker as exc:
                        if exc.reply_code != 404:
                            raise
                        down = queue_node_down(exc.reply_text or "")
                        if down is not None:  # its messages exist: the count is unknown
                            raise down from None
                        channel = conn.channel()
                        if at == 0 and kind != self.topology.ladder_type:
                            break  # that ladder was never declared: skip its other queues
            return total

    def purge(self, route: str) -> int:
        return self._purge(self.topology.names(route).queue)

    def purge_dead(self, route: str) -> int:
        return self._purge(self._dead_queue(route))

    def _purge(self, queue: str) -> int:
        return self._on_queue(
            lambda channel: int(channel.queue_purge(queue).method.message_count), missing=0)

    def _dead_queue(self, route: str) -> str:
        return self.topology.names(route).dead_letter_queue

    def migrate_route(self, route: str, force: bool = False) -> Migration:
        """Declare the route's queues with the settings' type, moving them if they exist
        with another (hutch.brokers.amqp.migration; ``hutch queues migrate``)."""
        with self._admin_connection() as conn:
            migration = migrate_route(conn, self.topology, route, force)
        self._publisher_forgets()
        return migration

    def delete_topology(self, routes: Sequence[str], shared: bool = False) -> None:
        """Delete routes' exchanges and queues (messages included); ``shared`` adds
        the fan-out exchanges and the delay ladder. The publisher forgets what it
        declared, so its next publish declares afresh instead of going unroutable."""
        exchanges, queues = self.topology.all_names(routes)
        if shared:
            shared_exchanges, shared_queues = self.topology.shared_names()
            exchanges, queues = exchanges + shared_exchanges, queues + shared_queues
        with self._admin_channel() as channel:
            for queue in queues:
                channel.queue_delete(queue)
            for exchange in exchanges:
                channel.exchange_delete(exchange)
        self._publisher_forgets()

    def _publisher_forgets(self) -> None:
        """The topology changed under the publisher: it declares afresh before its next
        publish instead of trusting its cache."""
        with self._lock:
            publisher = self._publisher if self._publisher_pid == os.getpid() else None
        if publisher is not None:
            publisher.forget_declared()

    def declare_blocking(self, routes: Sequence[str]) -> None:
        """Declare over a fresh blocking connection (no publisher thread needed)."""
        with self._admin_channel() as channel:
            declare_blocking(channel, self.topology.steps(routes))

    # --- internals ------------------------------------------------------------------

    def _nodes(self, role: str) -> Nodes:
        """The nodes a new connection of ``role`` tries (hutch.brokers.amqp.nodes)."""
        return Nodes(self.url, self.settings, role)

    def _get_publisher(self) -> Publisher:
        """The process's publisher; a forked child gets its own (threads do not survive fork)."""
        with self._lock:
            if self._publisher is None or self._publisher_pid != os.getpid():
                self._publisher = Publisher(self._nodes("publisher"), self.topology,
                                            self.settings.broker_confirm_timeout)
                self._publisher_pid = os.getpid()
            return self._publisher

    def _track(self, handle: AmqpConsumer | BroadcastSubscriber) -> None:
        with self._lock:
            self._handles.append(handle)

    def _passive(self, queue: str) -> tuple[int, int]:
        """(messages ready, consumers) of ``queue``; (0, 0) if it does not exist."""
        def count(channel: Any) -> tuple[int, int]:
            ok = channel.queue_declare(queue, passive=True).method
            return ok.message_count, ok.consumer_count
        return self._on_queue(count, missing=(0, 0))

    def _on_queue(self, action: Callable[[Any], T], missing: T) -> T:
        """``action(channel)`` on an admin channel, or ``missing`` if the queue it
        touches was never declared (RabbitMQ closes the channel with 404). QueueNodeDown
        if the queue's cluster node is down (also a 404): it exists, with its messages."""
        try:
            with self._admin_channel() as channel:
                return action(channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            down = queue_node_down(exc.reply_text or "")
            if down is not None:
                raise down from None
            return missing

    @contextmanager
    def _admin_channel(self) -> Iterator[Any]:
        with self._admin_connection() as conn:
            yield conn.channel()

    @contextmanager
    def _admin_connection(self) -> Iterator[Any]:
        try:
            conn = self._admin_nodes.first_answering(pika.BlockingConnection)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise connect_error(exc, self._masked) from exc
        try:
            yield conn
        finally:
            if conn.is_open:
                conn.close()
