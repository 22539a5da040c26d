"""The broker interface the client and the worker are written against.

Two implementations exist: :class:`hutch.brokers.amqp.broker.AmqpBroker` (RabbitMQ, the
product) and :class:`hutch.brokers.memory.MemoryBroker` (in-process, for the demo
and fast unit tests). Routes are queue names such as ``celery`` or
``priority.high``; how a route maps to exchanges and queues is the broker's
business (see docs/topology.md).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Protocol

from ..messages import Wire


class Delivery(Protocol):
    """One received message. ``ack``/``reject`` may be called from any thread, once."""

    wire: Wire
    queue: str
    redelivered: bool

    def ack(self) -> None: ...

    def reject(self, requeue: bool = False) -> None:
        """``requeue=False`` dead-letters the message into the route's dead-letter queue."""


class ConsumerHandle(Protocol):
    def start(self) -> None:
        """Begin delivering in a background thread; returns once consuming has started."""

    def cancel(self) -> None:
        """Stop taking new deliveries; unstarted prefetched ones go back to the queue."""

    def stop(self) -> None:
        """Cancel and close the connection; unacknowledged deliveries are redelivered."""

    def is_alive(self) -> bool: ...


class EventsHandle(Protocol):
    def close(self) -> None: ...


class Broker(abc.ABC):
    """What hutch needs from a broker."""

    url: str

    @abc.abstractmethod
    def declare(self, routes: Sequence[str]) -> None:
        """Declare the topology of these routes (idempotent)."""

    @abc.abstractmethod
    def publish(self, messages: Sequence[tuple[str, Wire]], timeout: float | None = None) -> None:
        """Publish ``(route, wire)`` pairs persistently and return once all are confirmed.

        Declares unknown routes first. Raises UnroutableError, PublishError or
        BrokerUnavailable; on error, none of the unconfirmed messages may be assumed stored.
        """

    @abc.abstractmethod
    def publish_dead(self, route: str, wire: Wire, timeout: float | None = None) -> None:
        """Put ``wire`` straight into the route's dead-letter queue, persistently, and
        return once the broker confirmed it (a worker's refusal carrying its reason in
        the headers). Raises as :meth:`publish` does."""

    @abc.abstractmethod
    def consume(self, routes: Sequence[str], prefetch: int,
                on_delivery: Callable[[Delivery], None]) -> ConsumerHandle:
        """A consumer of these routes; ``on_delivery`` is called in the consumer's thread."""

    @abc.abstractmethod
    def publish_event(self, body: bytes) -> None:
        """Fan out a small, non-persistent notice (task ids just committed); best effort."""

    @abc.abstractmethod
    def subscribe_events(self, on_event: Callable[[bytes], None]) -> EventsHandle:
        """Receive every notice published after this returns, in a background thread."""

    @abc.abstractmethod
    def publish_control(self, body: bytes) -> None:
        """Broadcast a command (a revocation) to every running worker; returns once the
        broker has it. Raises BrokerUnavailable or PublishError."""

    @abc.abstractmethod
    def subscribe_control(self, on_command: Callable[[bytes], None]) -> EventsHandle:
        """Receive every command broadcast after this returns, in a background thread."""

    # -- dead letters (``hutch dlq``) -------------------------------------------------
    @abc.abstractmethod
    def dead_letters(self, route: str, limit: int = 100) -> list[Wire]:
        """Up to ``limit`` messages of the route's dead-letter queue, left in place."""

    @abc.abstractmethod
    def replay_dead(self, route: str, task_id: str | None = None,
                    before: Callable[[Wire], None] | None = None) -> list[Wire]:
        """Move dead letters (all, or one task's) back onto their route, each a clean
        copy (see messages.replayable) published with a confirm before it is removed;
        ``before(copy)`` runs just before each publish (the row is reset there)."""

    @abc.abstractmethod
    def purge_dead(self, route: str) -> int:
        """Delete every dead letter of the route; returns how many."""

    @abc.abstractmethod
    def close(self) -> None: ...
