"""The broker interfaces the client, the worker and the operator tools are written against.

A broker does four jobs, each its own interface so a caller can be written
against the one it needs: :class:`Transport` moves task messages (declare,
publish, consume), :class:`FanOut` broadcasts small messages to every subscriber
(completion notices, control commands), :class:`Replies` carries the answers to a
control request back to the one who asked (``hutch inspect``), and :class:`Admin`
looks at and clears queues (depths, consumers, dead letters, purge, delete).
:class:`Broker` is all four plus ``close``. They are ABCs rather than Protocols because both
implementations are ours: a missing method fails when the broker is built, not
when a dashboard page first calls it, and FanOut carries the named shorthands
once for both.

Two implementations exist: :class:`hutch.brokers.amqp.broker.AmqpBroker` (RabbitMQ, the
product) and :class:`hutch.brokers.memory.MemoryBroker` (in-process, for the demo
and fast unit tests); tests/integration/test_broker_contract.py holds both to the
same contract. Routes are queue names such as ``celery`` or ``priority.high``;
how a route maps to exchanges and queues is the broker's business (see
docs/topology.md).
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..messages import Wire


class Delivery(Protocol):
    """One received message. ``ack``/``reject`` may be called from any thread, once.

    Its fields are read-only (properties), so a wrapper that forwards them (the worker's
    claimed and held deliveries) is a Delivery too."""

    @property
    def wire(self) -> Wire: ...

    @property
    def queue(self) -> str: ...

    @property
    def redelivered(self) -> bool: ...

    @property
    def exchange(self) -> str:
        """The exchange the broker says the message came through ("" on memory://)."""

    @property
    def routing_key(self) -> str:
        """The routing key it was published with (the route on memory://)."""

    @property
    def stale(self) -> bool:
        """True once the connection it came on is lost: the broker gives it again (to
        this worker or another), so this copy must not start running."""

    def ack(self) -> None: ...

    def reject(self, requeue: bool = False) -> None:
        """``requeue=False`` dead-letters the message into the route's dead-letter queue."""


class ForwardingDelivery:
    """A Delivery wrapping another and forwarding every field and both settlements: the
    worker's wrappers (a claimed delivery, one held for a rate limit) add to it."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    @property
    def wire(self) -> Wire:
        return self.delivery.wire

    @property
    def queue(self) -> str:
        return self.delivery.queue

    @property
    def redelivered(self) -> bool:
        return self.delivery.redelivered

    @property
    def exchange(self) -> str:
        return self.delivery.exchange

    @property
    def routing_key(self) -> str:
        return self.delivery.routing_key

    @property
    def stale(self) -> bool:
        return self.delivery.stale

    def ack(self) -> None:
        self.delivery.ack()

    def reject(self, requeue: bool = False) -> None:
        self.delivery.reject(requeue=requeue)


class ConsumerHandle(Protocol):
    def start(self) -> None:
        """Begin delivering in a background thread; returns once consuming has started."""

    def cancel(self) -> None:
        """Stop taking new deliveries; unstarted prefetched ones go back to the queue."""

    def stop(self) -> None:
        """Cancel and close the connection; unacknowledged deliveries are redelivered."""

    def is_alive(self) -> bool: ...

    def add_route(self, route: str) -> bool:
        """Declare ``route`` and consume it too, on this consumer's own channel, now and
        after a reconnect (``hutch control add_consumer``); False if consumed already."""

    def cancel_route(self, route: str) -> bool:
        """Stop consuming ``route`` (``hutch control cancel_consumer``): deliveries handed
        over already are run and settled, the rest stay in the queue; False if it was
        not consumed."""

    def set_prefetch(self, count: int) -> None:
        """Hold at most ``count`` unacknowledged deliveries (per route) from now on: a
        threads worker's pool was resized. Returns at once; the consumer's own thread
        applies it, and deliveries handed over already are kept and settled as ever."""


class SubscriptionHandle(Protocol):
    """A fan-out subscription; ``close()`` stops its deliveries."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class FanOutChannel:
    """A named broadcast: every subscriber gets every message published after it
    subscribed. ``confirmed``: the publisher learns whether the broker took the
    message (raising if not); otherwise publishing is best effort and never raises."""

    name: str
    confirmed: bool
    routed: bool = False
    """Each message carries a key and each subscriber names the keys it takes (a topic
    exchange on RabbitMQ); on the other channels every subscriber gets every message."""
    probed: bool = False
    """A broadcast may probe (``FanOut.broadcast(..., probe=True)``): the publisher
    learns when it reached nobody (RabbitMQ returns a mandatory message), and
    :meth:`FanOut.heard` tells a sender it may skip building messages nobody would get."""


NOTICES = FanOutChannel("notices", confirmed=False, routed=True)
"""Completion notices (task ids just committed): frequent, losing one costs a poll. Each
goes under the key of the client that sent its tasks (TaskMessage.notify), so a client
gets only its own unless it listens to every key (hutch.client.waiter)."""
NOTICE_EVERYONE = "all"
"""The key of a notice for every listening client: a revocation, a time-limit FAILURE
written by a prefork supervisor."""
NOTICE_UNADDRESSED = "none"
"""The key of a notice for tasks that name no client (a chord's body, a message of an
older client): only the clients listening to every key get it."""
EVERY_KEY = "#"
"""Subscribe with this key to get every message of a routed channel."""
CONTROL = FanOutChannel("control", confirmed=True)
"""Commands for every running worker (revocations): rare, must not vanish silently."""
TASK_EVENTS = FanOutChannel("task-events", confirmed=False, probed=True)
"""Task events (task-sent ... task-rejected, hutch.events) for live views: a channel of
its own so completion-notice waiters never decode them, and event readers never see
notices (docs/topology.md)."""
UNHEARD_PAUSE = 1.0
"""Seconds a probed channel counts as unheard after a broadcast on it reached nobody
(RabbitMQ returned it): a client builds no task-sent meanwhile, then sends the next
one, which probes again. So a reader that subscribes misses at most this long of an
idle client's task-sent."""


def pause_over(returned_at: float | None) -> bool:
    """Whether UNHEARD_PAUSE has passed since a probing broadcast came back unread at
    ``returned_at`` (``time.monotonic()``; None: none ever came back): the rule of
    every publisher's ``heard``."""
    return returned_at is None or time.monotonic() - returned_at >= UNHEARD_PAUSE


@dataclass(frozen=True)
class QueueStats:
    """One route's work queue as the broker sees it now."""

    ready: int
    """Messages waiting to be delivered."""
    unacked: int | None
    """Messages delivered and not yet acknowledged; None where the broker cannot tell
    (RabbitMQ over AMQP: a passive declare counts ready messages and consumers only)."""
    consumers: int
    node_down: str | None = None
    """The cluster node the queue lives on, when that node is down (a classic queue on a
    lost node: no other node can count or serve it). Its counts are then unknown and
    read 0; what shows queues says "node down" instead of showing them."""


class Confirmation:
    """The broker's answer to one publish handed over without waiting for it
    (:meth:`Transport.publish_later`): settled once, with the error or None.

    Callbacks run in the thread that settles it (the publisher's I/O thread), so they
    must be quick and must not publish."""

    __slots__ = ("_callbacks", "_done", "_lock", "error")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[Confirmation], None]] = []
        self.error: BaseException | None = None

    def settle(self, error: BaseException | None = None) -> None:
        """Record the answer; the first one counts."""
        with self._lock:
            if self._done.is_set():
                return
            self.error = error
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once settled (successfully or not), False when ``timeout`` ran out."""
        return self._done.wait(timeout)

    def add_done_callback(self, callback: Callable[[Confirmation], None]) -> None:
        """``callback(self)`` once settled: at once if it is already."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback(self)


class Transport(abc.ABC):
    """Task messages: declare routes, publish persistently with confirms, consume."""

    @abc.abstractmethod
    def declare(self, routes: Sequence[str]) -> None:
        """Declare the topology of these routes (idempotent)."""

    @abc.abstractmethod
    def publish(self, messages: Sequence[tuple[str, Wire]], timeout: float | None = None) -> None:
        """Publish ``(route, wire)`` pairs persistently and return once all are confirmed.

        Declares unknown routes first. Raises UnroutableError, PublishError or
        BrokerUnavailable; on error, none of the unconfirmed messages may be assumed stored.
        """

    def publish_later(self, messages: Sequence[tuple[str, Wire]]) -> Confirmation:
        """Hand ``messages`` over and return before the broker confirms them; the
        :class:`Confirmation` settles once all are confirmed (error None) or one fails
        (the error :meth:`publish` would raise). This default publishes and waits, for
        a broker that confirms at once (memory://); a broker that cannot take the
        messages at all raises as :meth:`publish` does."""
        self.publish(messages)
        confirmation = Confirmation()
        confirmation.settle()
        return confirmation

    @abc.abstractmethod
    def publish_dead(self, route: str, wire: Wire, timeout: float | None = None) -> None:
        """Put ``wire`` straight into the route's dead-letter queue, persistently, and
        return once the broker confirmed it (a worker's refusal carrying its reason in
        the headers). Raises as :meth:`publish` does."""

    @abc.abstractmethod
    def consume(self, routes: Sequence[str], prefetch: int,
                on_delivery: Callable[[Delivery], None]) -> ConsumerHandle:
        """A consumer of these routes; ``on_delivery`` is called in the consumer's thread."""


class FanOut(abc.ABC):
    """Broadcasts on named channels (:data:`NOTICES`, :data:`CONTROL`): one mechanism,
    two guarantees. Subscribers' callbacks run in a background thread (RabbitMQ) or in
    the publisher's (memory://); one that raises is logged and neither stops the
    subscription nor reaches the publisher."""

    @abc.abstractmethod
    def broadcast(self, channel: FanOutChannel, body: bytes, key: str = "",
                  probe: bool = False) -> bool:
        """Send ``body`` to every current subscriber of ``channel`` (of a routed channel:
        every subscriber that named ``key`` or :data:`EVERY_KEY`). ``probe``, for the
        sender of a probed channel that consults :meth:`heard`: note when nobody got
        it. Confirmed channels return once the broker has it and raise
        BrokerUnavailable or PublishError;
        the others never raise: they return False when the message was dropped (the
        publisher closed or unreachable; logged at debug level), so a sender that
        counts its losses (hutch.events) can."""

    @abc.abstractmethod
    def subscribe(self, channel: FanOutChannel, callback: Callable[[bytes], None],
                  keys: Sequence[str] = (EVERY_KEY,)) -> SubscriptionHandle:
        """Receive every message broadcast on ``channel`` after this returns (on a
        routed channel, those under one of ``keys``)."""

    def heard(self, channel: FanOutChannel) -> bool:
        """Whether a message broadcast on ``channel`` now may reach a subscriber: False
        only for a probed channel whose last probing broadcast from this process, within
        UNHEARD_PAUSE seconds, reached nobody (so a sender skips building what nobody
        would get, and the first broadcast after the pause probes again)."""
        return True

    def publish_notice(self, body: bytes, key: str) -> None:
        """Send a completion notice (task ids just committed) under ``key`` (the client
        route its tasks named, :data:`NOTICE_EVERYONE` or :data:`NOTICE_UNADDRESSED`);
        best effort."""
        self.broadcast(NOTICES, body, key)

    def subscribe_notices(self, on_notice: Callable[[bytes], None],
                         keys: Sequence[str]) -> SubscriptionHandle:
        """Receive the completion notices sent under ``keys`` (:data:`EVERY_KEY`: all)."""
        return self.subscribe(NOTICES, on_notice, keys)

    def publish_control(self, body: bytes) -> None:
        """Broadcast a command (a revocation) to every running worker; returns once the
        broker has it. Raises BrokerUnavailable or PublishError."""
        self.broadcast(CONTROL, body)

    def subscribe_control(self, on_command: Callable[[bytes], None]) -> SubscriptionHandle:
        return self.subscribe(CONTROL, on_command)


class Inbox(Protocol):
    """Where the replies to one control request arrive (:meth:`Replies.open_inbox`);
    used by one thread, the requester's."""

    @property
    def name(self) -> str:
        """The address repliers send to (a request's ``reply_to``)."""

    def get(self, timeout: float) -> bytes | None:
        """The next reply, waiting up to ``timeout`` seconds; None if none came."""

    def close(self) -> None:
        """Stop receiving; replies sent later are dropped."""


class Replies(abc.ABC):
    """Answers to a control request (``hutch inspect``): the requester opens an inbox,
    names it in the request it broadcasts, and every worker process replies there."""

    @abc.abstractmethod
    def open_inbox(self) -> Inbox:
        """A new inbox that exists until closed (on RabbitMQ: until closed or its
        connection drops)."""

    @abc.abstractmethod
    def reply(self, to: str, body: bytes) -> None:
        """Send ``body`` to the inbox named ``to``; best effort: a reply to an inbox
        gone (its requester gave up) is dropped, and nothing raises, since the
        caller is a worker's control thread."""


class Admin(abc.ABC):
    """What operators (``hutch dlq``, the dashboard) ask of the queues. A route that
    was never declared reads as empty: zero counts, no dead letters, nothing purged. A
    queue whose cluster node is down is not empty: :meth:`queue_stats` says so
    (``node_down``), and the others raise QueueNodeDown."""

    @abc.abstractmethod
    def queue_stats(self, route: str) -> QueueStats:
        """The route's work queue now (the dead-letter queue: :meth:`dead_letter_count`)."""

    @abc.abstractmethod
    def dead_letter_count(self, route: str) -> int:
        """Messages waiting in the route's dead-letter queue."""

    @abc.abstractmethod
    def dead_letters(self, route: str, limit: int = 100) -> list[Wire]:
        """Up to ``limit`` messages of the route's dead-letter queue, oldest first,
        left in place."""

    @abc.abstractmethod
    def replay_dead(self, route: str, task_id: str | None = None,
                    before: Callable[[Wire], None] | None = None) -> list[Wire]:
        """Move dead letters (all, or one task's) back onto their route, each a clean
        copy (see messages.replayable) published with a confirm before it is removed;
        ``before(copy)`` runs just before each publish (the row is reset there)."""

    @abc.abstractmethod
    def purge(self, route: str) -> int:
        """Delete the ready messages of the route's work queue; returns how many
        (unacknowledged ones stay with their consumer)."""

    @abc.abstractmethod
    def purge_dead(self, route: str) -> int:
        """Delete every dead letter of the route; returns how many."""

    @abc.abstractmethod
    def delayed_count(self) -> int:
        """Messages waiting for their eta now, every route's (on RabbitMQ: in the delay
        ladder; countdowns, retries and rate-limit waits too)."""

    @abc.abstractmethod
    def delete_topology(self, routes: Sequence[str], shared: bool = False) -> None:
        """Delete these routes' queues, messages included; ``shared`` also ends the
        fan-out channels' current subscriptions (and on RabbitMQ deletes the shared
        exchanges and the delay ladder). A later publish declares the routes afresh."""

    def queue_depths(self, routes: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``{route: (ready, consumers)}``: :meth:`queue_stats` of several routes, in the
        shape the benchmarks and older tests read."""
        stats = {route: self.queue_stats(route) for route in routes}
        return {route: (s.ready, s.consumers) for route, s in stats.items()}


class Broker(Transport, FanOut, Replies, Admin):
    """What hutch needs from a broker: all four jobs over one URL."""

    url: str

    @property
    def publishing_node(self) -> str | None:
        """``host:port`` of the broker node this process publishes through (the node its
        publisher is connected to, or tries next), no credentials; None before the first
        publish, and for a broker without nodes (memory://). Beat records it in its
        lease row, so an operator sees which node the active beat depends on."""
        return None

    @abc.abstractmethod
    def close(self) -> None: ...
