"""``AmqpBroker``: RabbitMQ behind hutch's Broker interface.

Composes the confirm-windowed publisher (one per process, created on first
use), a consumer per ``consume()`` call, and an events subscriber per
``subscribe_events()`` call. Admin helpers (queue depths, dead-letter counts,
deleting a prefix's topology) use a short-lived blocking connection.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pika
import pika.exceptions

from ...config import Settings
from ...errors import BrokerUnavailable, PublishError
from ...logs import get_logger
from ...messages import Wire, replayable
from ..base import Broker, ConsumerHandle, Delivery, EventsHandle
from ..routes import topology_for
from .consumer import AmqpConsumer, wire_from
from .events import EventSubscriber
from .failures import connect_error
from .floats import allow_float_headers
from .params import parse_url, pika_parameters
from .publisher import Publisher
from .topology import Topology, declare_blocking

log = get_logger("hutch.amqp")


class AmqpBroker(Broker):
    def __init__(self, url: str, settings: Settings, topology: Topology | None = None) -> None:
        self.url = url
        self.settings = settings
        self._masked = parse_url(url).masked  # raises ConfigurationError for a bad URL
        allow_float_headers()  # before any pika connection: dead_letters() decodes headers too
        self.topology = topology or topology_for(settings)
        self._lock = threading.Lock()
        self._publisher: Publisher | None = None
        self._publisher_pid = 0
        self._handles: list[AmqpConsumer | EventSubscriber] = []

    def __repr__(self) -> str:
        return f"<AmqpBroker {self._masked} prefix={self.topology.prefix!r}>"

    # --- Broker -------------------------------------------------------------------

    def declare(self, routes: Sequence[str]) -> None:
        self._get_publisher().declare(list(routes), timeout=self.settings.broker_confirm_timeout)

    def publish(self, messages: Sequence[tuple[str, Wire]], timeout: float | None = None) -> None:
        self._get_publisher().publish(messages, timeout)

    def publish_dead(self, route: str, wire: Wire, timeout: float | None = None) -> None:
        self._get_publisher().publish([(route, wire)], timeout, dead=True)

    def publish_event(self, body: bytes) -> None:
        try:
            self._get_publisher().publish_event(body)
        except BrokerUnavailable as exc:
            log.debug("event not published", error=str(exc))

    def consume(self, routes: Sequence[str], prefetch: int,
                on_delivery: Callable[[Delivery], None]) -> ConsumerHandle:
        consumer = AmqpConsumer(self._params("worker"), self.topology, routes, prefetch,
                                on_delivery, self._masked)
        self._track(consumer)
        return consumer

    def subscribe_events(self, on_event: Callable[[bytes], None]) -> EventsHandle:
        subscriber = EventSubscriber(self._params("events"), self.topology, on_event,
                                     self._masked).start()
        self._track(subscriber)
        return subscriber

    def publish_control(self, body: bytes) -> None:
        """Over a short-lived confirmed channel: commands are rare and must not be lost
        silently, unlike the events the publisher fires and forgets."""
        with self._admin_channel() as channel:
            try:
                declare_blocking(channel, self.topology.shared_steps())
                channel.confirm_delivery()
                channel.basic_publish(self.topology.control_exchange, "", body,
                                      pika.BasicProperties(delivery_mode=1, app_id="hutch",
                                                           content_type="application/json"))
            except pika.exceptions.AMQPError as exc:
                raise PublishError(f"control broadcast to {self._masked} failed: "
                                   f"{type(exc).__name__}: {exc}") from exc

    def subscribe_control(self, on_command: Callable[[bytes], None]) -> EventsHandle:
        subscriber = EventSubscriber(self._params("control"), self.topology, on_command,
                                     self._masked, self.topology.control_exchange).start()
        self._track(subscriber)
        return subscriber

    def close(self) -> None:
        with self._lock:
            publisher, self._publisher = self._publisher, None
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.stop() if isinstance(handle, AmqpConsumer) else handle.close()
        if publisher is not None and self._publisher_pid == os.getpid():
            publisher.close()

    # --- admin ----------------------------------------------------------------------

    def queue_depths(self, routes: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``{route: (messages_ready, consumers)}`` of work queues; (0, 0) if not declared."""
        return {route: self._passive(self.topology.names(route).queue) for route in routes}

    def dead_letter_count(self, route: str) -> int:
        """Messages waiting in the route's dead-letter queue ``P.R.dead``."""
        return self._passive(self.topology.names(route).dead_letter_queue)[0]

    def dead_letters(self, route: str, limit: int = 100) -> list[Wire]:
        """Peek: basic.get without ack; closing the channel puts them all back in order."""
        out: list[Wire] = []
        with self._admin_channel() as channel:
            for _ in range(limit):
                method, props, body = channel.basic_get(self._dead_queue(route))
                if method is None:
                    break
                out.append(wire_from(props, body))
        return out

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

    def purge_dead(self, route: str) -> int:
        with self._admin_channel() as channel:
            return int(channel.queue_purge(self._dead_queue(route)).method.message_count)

    def _dead_queue(self, route: str) -> str:
        return self.topology.names(route).dead_letter_queue

    def delete_topology(self, routes: Sequence[str], shared: bool = False) -> None:
        """Delete routes' exchanges and queues (messages included); ``shared`` adds
        the events and control exchanges. For tests and ``dlq purge``-style tooling."""
        exchanges, queues = self.topology.all_names(routes)
        if shared:
            shared_exchanges, shared_queues = self.topology.shared_names()
            exchanges, queues = exchanges + shared_exchanges, queues + shared_queues
        with self._admin_channel() as channel:
            for queue in queues:
                channel.queue_delete(queue)
            for exchange in exchanges:
                channel.exchange_delete(exchange)

    def declare_blocking(self, routes: Sequence[str]) -> None:
        """Declare over a fresh blocking connection (no publisher thread needed)."""
        with self._admin_channel() as channel:
            declare_blocking(channel, self.topology.steps(routes))

    # --- internals ------------------------------------------------------------------

    def _params(self, role: str) -> pika.ConnectionParameters:
        return pika_parameters(self.url, self.settings, role)

    def _get_publisher(self) -> Publisher:
        """The process's publisher; a forked child gets its own (threads do not survive fork)."""
        with self._lock:
            if self._publisher is None or self._publisher_pid != os.getpid():
                self._publisher = Publisher(self._params("publisher"), self.topology,
                                            self._masked, self.settings.broker_confirm_timeout)
                self._publisher_pid = os.getpid()
            return self._publisher

    def _track(self, handle: AmqpConsumer | EventSubscriber) -> None:
        with self._lock:
            self._handles.append(handle)

    def _passive(self, queue: str) -> tuple[int, int]:
        try:
            with self._admin_channel() as channel:
                ok = channel.queue_declare(queue, passive=True).method
                return ok.message_count, ok.consumer_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return 0, 0
            raise

    @contextmanager
    def _admin_channel(self) -> Iterator[Any]:
        try:
            conn = pika.BlockingConnection(self._params("admin"))
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise connect_error(exc, self._masked) from exc
        try:
            yield conn.channel()
        finally:
            if conn.is_open:
                conn.close()
