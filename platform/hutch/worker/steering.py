"""Worker-wide control commands: shutdown, pool_grow/pool_shrink, autoscale, heartbeat.

Every consuming process answers control requests for itself (worker/remote.py),
but these act on the worker as a whole. A worker of its own carries them out
itself (:class:`OwnOrders`). Under prefork the supervisor runs the worker, and
it has no broker connection: every child hears the request, so each child posts
it into its own ring of shared memory (:class:`Steering`), and the supervisor,
which polls the rings in its loop, carries out each request once, by its ticket.
Shared memory, as for the time-limit slots and the counters: nothing a child
killed mid-write holds can block the supervisor, and no child waits for it.

:class:`Steering` also holds the pool's current size, which every child reads
when it says how many processes of its worker answer (``of``) and when it takes
its share of the rate limits.
"""

from __future__ import annotations

import ctypes
import multiprocessing.sharedctypes as shared
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .autoscale import check_bounds

if TYPE_CHECKING:
    from .remote import Node

SHUTDOWN, GROW, SHRINK, AUTOSCALE, HEARTBEAT = (
    "shutdown", "pool_grow", "pool_shrink", "autoscale", "heartbeat")
ORDERS = (SHUTDOWN, GROW, SHRINK, AUTOSCALE, HEARTBEAT)
"""The worker-wide commands, by Celery's names."""

RING = 16
"""Orders a child can post before the supervisor reads them (it reads every 0.1 s)."""
TICKET_BYTES = 64
REMEMBERED = 256
"""Tickets the supervisor remembers having carried out (every child posts each one)."""


@dataclass(frozen=True)
class Order:
    """One worker-wide command: ``ticket`` of the request, ``command`` of
    :data:`ORDERS`, and up to two numbers (``n``; autoscale's ``max`` and ``min``)."""

    ticket: str
    command: str
    first: int = 0
    second: int = 0


class Orders(Protocol):
    """Where a worker process sends the worker-wide commands it receives."""

    pool: str

    def size(self) -> int:
        """How many processes run tasks now (a prefork worker's children)."""

    def carry_out(self, order: Order) -> None:
        """Act on ``order`` (a prefork child: hand it to the supervisor); raises
        ValueError for what this worker cannot do."""


class Outbox:
    """One child slot's ring of orders: written by that child only, read by the
    supervisor; ``written`` goes up last, so the reader never sees a half order."""

    def __init__(self) -> None:
        self._written = shared.RawValue(ctypes.c_uint64, 0)
        self._tickets = [shared.RawArray(ctypes.c_char, TICKET_BYTES + 1) for _ in range(RING)]
        self._commands = shared.RawArray(ctypes.c_int, RING)
        self._numbers = shared.RawArray(ctypes.c_int64, RING * 2)

    def post(self, order: Order) -> None:
        at = self._written.value % RING
        self._tickets[at].value = order.ticket.encode()[:TICKET_BYTES]
        self._commands[at] = ORDERS.index(order.command)
        self._numbers[2 * at], self._numbers[2 * at + 1] = order.first, order.second
        self._written.value += 1

    def read(self, since: int) -> tuple[list[Order], int]:
        """The orders posted after position ``since``, and the position now (orders
        overwritten before they were read are skipped)."""
        written = self._written.value
        start = max(since, written - RING)
        orders = []
        for position in range(start, written):
            at = position % RING
            orders.append(Order(self._tickets[at].value.decode(errors="replace"),
                                ORDERS[self._commands[at]], self._numbers[2 * at],
                                self._numbers[2 * at + 1]))
        return orders, written


class Steering:
    """A prefork worker's shared memory for worker-wide commands: the pool's size and
    an :class:`Outbox` per child slot. Made before the first fork; the supervisor adds
    an outbox for a new slot before it forks that slot's child."""

    def __init__(self, size: int) -> None:
        self._size = shared.RawValue(ctypes.c_int, size)
        self.outboxes: list[Outbox] = []
        self._read: list[int] = []
        self._done: deque[str] = deque(maxlen=REMEMBERED)

    def size(self) -> int:
        return int(self._size.value)

    def resized(self, size: int) -> None:
        self._size.value = size

    def outbox(self, slot: int) -> Outbox:
        """Slot ``slot``'s outbox, made on first use (in the supervisor, before the fork)."""
        while len(self.outboxes) <= slot:
            self.outboxes.append(Outbox())
            self._read.append(0)
        return self.outboxes[slot]

    def collect(self) -> list[Order]:
        """The supervisor's side: orders posted since the last call, each ticket once."""
        fresh = []
        for slot, outbox in enumerate(self.outboxes):
            orders, self._read[slot] = outbox.read(self._read[slot])
            for order in orders:
                if order.ticket not in self._done:
                    self._done.append(order.ticket)
                    fresh.append(order)
        return fresh


class ChildOrders:
    """A prefork child's :class:`Orders`: posted to the supervisor."""

    pool = "prefork"

    def __init__(self, steering: Steering, slot: int) -> None:
        self.steering = steering
        self._outbox = steering.outbox(slot)

    def size(self) -> int:
        return self.steering.size()

    def carry_out(self, order: Order) -> None:
        self._outbox.post(order)


class OwnOrders:
    """A worker of its own (threads, asyncio, solo): its pool has a fixed size, so it
    stops and writes its heartbeat itself and refuses to resize."""

    def __init__(self, pool: str, size: int, stop: Callable[[], None],
                 heartbeat: Callable[[], object]) -> None:
        self.pool = pool
        self._size = size
        self._stop = stop
        self._heartbeat = heartbeat

    def size(self) -> int:
        return self._size

    def carry_out(self, order: Order) -> None:
        if order.command == SHUTDOWN:
            self._stop()
        elif order.command == HEARTBEAT:
            self._heartbeat()
        else:
            raise ValueError(f"{order.command}: the {self.pool} pool has a fixed size "
                             "(restart it with another -c, or run -P prefork)")


# -- the commands, as worker/remote.py answers them (Celery's reply texts) ------------

def shutdown(node: Node, _arguments: dict[str, Any]) -> Any:
    """A warm shutdown, as SIGTERM: running tasks finish first."""
    _orders(node).carry_out(Order(node.ticket, SHUTDOWN))
    return {"ok": "shutting down (warm: running tasks finish first)"}


def pool_grow(node: Node, arguments: dict[str, Any]) -> Any:
    orders = _orders(node)
    orders.carry_out(Order(node.ticket, GROW, _whole(arguments, "n", 1)))
    return {"ok": "pool will grow"}


def pool_shrink(node: Node, arguments: dict[str, Any]) -> Any:
    """Children stop warm (the idlest first); one always stays."""
    count, orders = _whole(arguments, "n", 1), _orders(node)
    if orders.pool == "prefork" and orders.size() - count < 1:
        raise ValueError(f"pool_shrink: the pool has {orders.size()} children and keeps "
                         f"at least one (asked to stop {count})")
    orders.carry_out(Order(node.ticket, SHRINK, count))
    return {"ok": "pool will shrink"}


def autoscale(node: Node, arguments: dict[str, Any]) -> Any:
    """Set (or turn on) the autoscaler's bounds."""
    maximum, minimum = _whole(arguments, "max"), _whole(arguments, "min", 1)
    check_bounds(maximum, minimum)
    _orders(node).carry_out(Order(node.ticket, AUTOSCALE, maximum, minimum))
    return {"ok": f"autoscale now max={maximum} min={minimum}"}


def heartbeat(node: Node, _arguments: dict[str, Any]) -> Any:
    """Write the worker's ``hutch_workers`` row now (Celery sends a heartbeat event)."""
    _orders(node).carry_out(Order(node.ticket, HEARTBEAT))
    return {"ok": "heartbeat written"}


COMMANDS: dict[str, Callable[[Node, dict[str, Any]], Any]] = {
    SHUTDOWN: shutdown, GROW: pool_grow, SHRINK: pool_shrink, AUTOSCALE: autoscale,
    HEARTBEAT: heartbeat}


def _orders(node: Node) -> Orders:
    if node.orders is None:
        raise ValueError("this worker process takes no worker-wide commands")
    return node.orders


def _whole(arguments: dict[str, Any], name: str, default: int | None = None) -> int:
    """A positive whole-number argument (``default`` when absent; required without one)."""
    value = arguments.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name!r} must be a whole number of at least 1, not {value!r}")
    return value
