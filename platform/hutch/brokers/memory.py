"""``memory://``: an in-process broker with RabbitMQ's semantics as tasks see them.

Routes are FIFO queues (per priority level, highest first, on routes with a
maximum priority) with a dead-letter queue each; deliveries stay
unacknowledged until acked, rejected (dead-lettered) or requeued, and a
consumer never holds more than its prefetch. It exists for ``hutch demo`` and
for fast unit tests of the logic above the broker; it is not durable and not
shared between processes. Brokers with the same URL in one process share state.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from ..errors import BrokerError
from ..logs import get_logger
from ..messages import Wire, delay_seconds, replayable
from .base import EVERY_KEY, Broker, ConsumerHandle, FanOutChannel, QueueStats, SubscriptionHandle

log = get_logger("hutch.memory")


class _Ready:
    """A route's ready messages: FIFO within a priority level, the highest level first,
    and a priority above the maximum counts as the maximum (as in RabbitMQ)."""

    def __init__(self, max_priority: int | None = None) -> None:
        self._levels: list[deque[Wire]] = [deque() for _ in range((max_priority or 0) + 1)]

    def _level(self, wire: Wire) -> deque[Wire]:
        return self._levels[min(max(wire.priority or 0, 0), len(self._levels) - 1)]

    def append(self, wire: Wire) -> None:
        self._level(wire).append(wire)

    def appendleft(self, wire: Wire) -> None:
        self._level(wire).appendleft(wire)

    def popleft(self) -> Wire:
        for level in reversed(self._levels):
            if level:
                return level.popleft()
        raise IndexError("no ready message")

    def clear(self) -> int:
        """Drop every ready message; returns how many there were."""
        count = len(self)
        for level in self._levels:
            level.clear()
        return count

    def __len__(self) -> int:
        return sum(len(level) for level in self._levels)


@dataclass(eq=False)
class _Route:
    """Compared by identity: a consumer holds on to the routes it counts itself in."""

    ready: _Ready = field(default_factory=_Ready)
    dead: list[Wire] = field(default_factory=list)
    redelivered: set[int] = field(default_factory=set)
    unacked: int = 0
    consumers: int = 0


class _State:
    """The queues behind one memory:// URL."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.routes: dict[str, _Route] = {}
        self.listeners: defaultdict[str, list[_Listener]] = defaultdict(list)
        """Fan-out subscribers by channel name."""
        self.serial = itertools.count(1)
        self.inboxes: dict[str, queue.SimpleQueue[bytes]] = {}
        """Open reply inboxes by name (Replies)."""
        self.delayed = 0
        """Messages waiting for their eta in a timer (Admin.delayed_count)."""

    def route(self, name: str, max_priority: int | None = None) -> _Route:
        """The route, created on first use with the creating broker's maximum priority."""
        if name not in self.routes:
            self.routes[name] = _Route(_Ready(max_priority))
        return self.routes[name]


_STATES: dict[str, _State] = {}
_STATES_LOCK = threading.Lock()


class MemoryBroker(Broker):
    def __init__(self, url: str = "memory://",
                 max_priority: Callable[[str], int | None] | None = None) -> None:
        self.url = url
        self._max_priority = max_priority or (lambda _route: None)
        with _STATES_LOCK:
            self._state = _STATES.setdefault(url, _State())

    def declare(self, routes: Sequence[str]) -> None:
        with self._state.cond:
            for name in routes:
                self._route(name)

    def _route(self, name: str) -> _Route:
        return self._state.route(name, self._max_priority(name))

    def publish(self, messages: Sequence[tuple[str, Wire]], timeout: float | None = None) -> None:
        """Due messages are queued at once; delayed ones by a timer (RabbitMQ's ladder's
        stand-in), so they too never wait inside a consumer."""
        with self._state.cond:
            for route, wire in messages:
                delay = delay_seconds(wire)
                if delay:
                    self._state.delayed += 1
                    timer = threading.Timer(delay, self._due, (route, wire))
                    timer.daemon = True
                    timer.start()
                else:
                    self._route(route).ready.append(wire)
            self._state.cond.notify_all()

    def _due(self, route: str, wire: Wire) -> None:
        """A delayed message's timer: it leaves the count of delayed ones, and is queued."""
        with self._state.cond:
            self._state.delayed -= 1
        self.publish([(route, wire)])

    def publish_dead(self, route: str, wire: Wire, timeout: float | None = None) -> None:
        with self._state.cond:
            self._route(route).dead.append(wire)

    def consume(self, routes: Sequence[str], prefetch: int,
                on_delivery: Callable[[MemoryDelivery], None]) -> ConsumerHandle:
        self.declare(routes)
        return _MemoryConsumer(self._state, list(routes), prefetch, on_delivery, self._route)

    # --- FanOut: callbacks run in the publisher's thread, one failing is only logged --

    def broadcast(self, channel: FanOutChannel, body: bytes, key: str = "",
                  probe: bool = False) -> bool:
        for listener in list(self._state.listeners[channel.name]):
            if channel.routed and not listener.takes(key):
                continue
            try:
                listener.callback(body)
            except Exception:
                log.exception("fan-out callback failed", channel=channel.name)
        return True

    def heard(self, channel: FanOutChannel) -> bool:
        """Exact here: whether anyone subscribes to a probed ``channel`` now."""
        return not channel.probed or bool(self._state.listeners[channel.name])

    def subscribe(self, channel: FanOutChannel, callback: Callable[[bytes], None],
                  keys: Sequence[str] = (EVERY_KEY,)) -> SubscriptionHandle:
        listeners = self._state.listeners[channel.name]
        listener = _Listener(callback, frozenset(keys))
        listeners.append(listener)
        return _Subscription(listeners, listener)

    # --- Replies: an inbox is an in-process queue -----------------------------------

    def open_inbox(self) -> MemoryInbox:
        name = f"inbox-{next(self._state.serial)}"
        inbox = MemoryInbox(name, self._state.inboxes)
        with self._state.cond:
            self._state.inboxes[name] = inbox.items
        return inbox

    def reply(self, to: str, body: bytes) -> None:
        with self._state.cond:
            inbox = self._state.inboxes.get(to)
        if inbox is not None:
            inbox.put(body)

    # --- Admin -------------------------------------------------------------------------

    def queue_stats(self, route: str) -> QueueStats:
        with self._state.cond:
            found = self._state.routes.get(route)
            if found is None:
                return QueueStats(ready=0, unacked=0, consumers=0)
            return QueueStats(ready=len(found.ready), unacked=found.unacked,
                              consumers=found.consumers)

    def dead_letter_count(self, route: str) -> int:
        with self._state.cond:
            found = self._state.routes.get(route)
            return len(found.dead) if found is not None else 0

    def dead_letters(self, route: str, limit: int = 100) -> list[Wire]:
        with self._state.cond:
            found = self._state.routes.get(route)
            return list(found.dead[:limit]) if found is not None else []

    def replay_dead(self, route: str, task_id: str | None = None,
                    before: Callable[[Wire], None] | None = None) -> list[Wire]:
        with self._state.cond:
            found = self._state.routes.get(route)
            dead = found.dead if found is not None else []
            chosen = [w for w in dead if task_id is None or w.message_id == task_id]
            dead[:] = [w for w in dead if w not in chosen]
        replayed = [replayable(w) for w in chosen]
        for wire in replayed:
            if before is not None:
                before(wire)
        self.publish([(w.headers.get("queue") or route, w) for w in replayed])
        return replayed

    def delayed_count(self) -> int:
        with self._state.cond:
            return self._state.delayed

    def purge(self, route: str) -> int:
        with self._state.cond:
            found = self._state.routes.get(route)
            if found is None:
                return 0
            return found.ready.clear()

    def purge_dead(self, route: str) -> int:
        with self._state.cond:
            found = self._state.routes.get(route)
            if found is None:
                return 0
            count, found.dead[:] = len(found.dead), []
            return count

    def delete_topology(self, routes: Sequence[str], shared: bool = False) -> None:
        """Consumers of a deleted route stop receiving, as RabbitMQ cancels them."""
        with self._state.cond:
            for route in routes:
                self._state.routes.pop(route, None)
            if shared:
                self._state.listeners.clear()
            self._state.cond.notify_all()

    def close(self) -> None:
        """Nothing to release; the queues live as long as the process."""


@dataclass(eq=False)  # told apart by identity: one per subscribe()
class _Listener:
    callback: Callable[[bytes], None]
    keys: frozenset[str]

    def takes(self, key: str) -> bool:
        """A routed channel's key match; RabbitMQ's topic wildcards beyond a lone
        ``#`` are not needed by hutch's keys, so they are not mimicked."""
        return key in self.keys or EVERY_KEY in self.keys


@dataclass(frozen=True)
class _Subscription:
    listeners: list[_Listener]
    listener: _Listener

    def close(self) -> None:
        if self.listener in self.listeners:
            self.listeners.remove(self.listener)


class MemoryInbox:
    """Implements ``hutch.brokers.base.Inbox``."""

    def __init__(self, name: str, registry: dict[str, queue.SimpleQueue[bytes]]) -> None:
        self.name = name
        self.items: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._registry = registry

    def get(self, timeout: float) -> bytes | None:
        try:
            return self.items.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def close(self) -> None:
        self._registry.pop(self.name, None)


class MemoryDelivery:
    def __init__(self, consumer: _MemoryConsumer, route: _Route, wire: Wire, queue: str,
                 redelivered: bool) -> None:
        self.wire, self.queue, self.redelivered = wire, queue, redelivered
        self.exchange, self.routing_key = "", queue  # no exchanges here: straight to the route
        self.stale = False  # no connection to lose
        self._consumer, self._route = consumer, route
        self._settled = False

    def ack(self) -> None:
        self._settle(None)

    def reject(self, requeue: bool = False) -> None:
        self._settle("requeue" if requeue else "dead")

    def _settle(self, outcome: str | None) -> None:
        state = self._consumer.state
        with state.cond:
            if self._settled:
                raise BrokerError("delivery already acknowledged or rejected")
            self._settled = True
            self._consumer.unacked -= 1
            state.cond.notify_all()
            route = self._route
            if state.routes.get(self.queue) is not route:  # deleted: its messages went too
                return
            route.unacked -= 1
            if outcome == "requeue":
                route.ready.appendleft(self.wire)
                route.redelivered.add(id(self.wire))
            elif outcome == "dead":
                headers = dict(self.wire.headers)
                headers["x-death"] = [{"queue": self.queue, "reason": "rejected", "count": 1}]
                route.dead.append(replace(self.wire, headers=headers))


class _MemoryConsumer:
    def __init__(self, state: _State, routes: list[str], prefetch: int,
                 on_delivery: Callable[[MemoryDelivery], None],
                 declare: Callable[[str], _Route]) -> None:
        self.state, self.routes, self.prefetch = state, routes, prefetch
        self.on_delivery = on_delivery
        self._declare = declare
        self.unacked = 0
        self._cancelled = threading.Event()
        self._counted: list[_Route] = []  # the routes whose consumer count includes this
        self._thread = threading.Thread(target=self._run, name="hutch-memory-consumer",
                                        daemon=True)

    def start(self) -> None:
        with self.state.cond:
            self._counted = [self.state.route(name) for name in self.routes]
            for route in self._counted:
                route.consumers += 1
        self._thread.start()

    def cancel(self) -> None:
        self._cancelled.set()
        with self.state.cond:
            counted, self._counted = self._counted, []
            for route in counted:
                route.consumers -= 1
            self.state.cond.notify_all()

    def stop(self) -> None:
        self.cancel()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def add_route(self, name: str) -> bool:
        with self.state.cond:
            if name in self.routes:
                return False
            self.routes.append(name)
            if not self._cancelled.is_set():
                route = self._declare(name)
                route.consumers += 1
                self._counted.append(route)
            self.state.cond.notify_all()
            return True

    def cancel_route(self, name: str) -> bool:
        with self.state.cond:
            if name not in self.routes:
                return False
            self.routes.remove(name)
            route = self.state.routes.get(name)
            if route is not None and route in self._counted:
                self._counted.remove(route)
                route.consumers -= 1
            return True

    def set_prefetch(self, count: int) -> None:
        with self.state.cond:
            self.prefetch = count
            self.state.cond.notify_all()

    def _next(self) -> tuple[str, _Route, Wire, bool] | None:
        """Wait for a message this consumer may take (prefetch permitting)."""
        with self.state.cond:
            while not self._cancelled.is_set():
                if self.unacked < self.prefetch:
                    for name in self.routes:
                        route = self.state.routes.get(name)
                        if route is not None and route.ready and route in self._counted:
                            wire = route.ready.popleft()
                            self.unacked += 1
                            route.unacked += 1
                            redelivered = id(wire) in route.redelivered
                            route.redelivered.discard(id(wire))
                            return name, route, wire, redelivered
                self.state.cond.wait(0.5)
        return None

    def _run(self) -> None:
        while (item := self._next()) is not None:
            name, route, wire, redelivered = item
            self.on_delivery(MemoryDelivery(self, route, wire, name, redelivered))

