"""Worker-wide control commands: shutdown, pool_grow/pool_shrink, autoscale, heartbeat.

Every consuming process answers control requests for itself (worker/remote.py),
but these act on the worker as a whole. A worker of its own carries them out
itself (:class:`OwnOrders`; a threads worker resizes its pool with
worker/threadscale.py). Under prefork the supervisor runs the worker, and
it has no broker connection: every child hears the request, so each child posts
it into its own ring of shared memory (:class:`Steering`), and the supervisor,
which polls the rings in its loop, carries out each request once, by its ticket.
Shared memory, as for the time-limit slots and the counters: nothing a child
killed mid-write holds can block the supervisor, and no child waits for it.

:class:`Steering` also holds the pool's current size, which every child reads
when it says how many processes of its worker answer (``of``) and when it takes
its share of the rate limits.

The adjustments a process makes to itself (``rate_limit``, ``add_consumer`` ...,
worker/adjustments.py) travel the same way, so that they outlive the child: the
supervisor keeps them (:class:`Adjustments`, the latest per task, queue or
switch), and a child it forks later, replacing one that died, applies them before
it consumes, as Celery's children share their main process's state.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing.sharedctypes as shared
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..logs import get_logger
from . import adjustments
from .autoscale import check_bounds
from .node import Order, Orders

if TYPE_CHECKING:
    from .node import Node
    from .threadscale import ThreadScaler

log = get_logger("hutch.control")

SHUTDOWN, GROW, SHRINK, AUTOSCALE, HEARTBEAT = (
    "shutdown", "pool_grow", "pool_shrink", "autoscale", "heartbeat")
ORDERS = (SHUTDOWN, GROW, SHRINK, AUTOSCALE, HEARTBEAT)
"""The worker-wide commands, by Celery's names."""
ADJUSTMENTS = tuple(adjustments.COMMANDS)
"""The commands that adjust one process, which the supervisor keeps for new children."""
_KNOWN = ORDERS + ADJUSTMENTS

RING = 16
"""Orders a child can post before the supervisor reads them (it reads every 0.1 s)."""
TICKET_BYTES = 64
PAYLOAD_BYTES = 1024
"""An adjustment's arguments, as JSON, at most (a task or queue name and a number)."""
REMEMBERED = 256
"""Tickets the supervisor remembers having carried out (every child posts each one)."""


class Outbox:
    """One child slot's ring of orders: written by that child only, read by the
    supervisor; ``written`` goes up last, so the reader never sees a half order."""

    def __init__(self) -> None:
        self._written = shared.RawValue(ctypes.c_uint64, 0)
        self._tickets = [shared.RawArray(ctypes.c_char, TICKET_BYTES + 1) for _ in range(RING)]
        self._payloads = [shared.RawArray(ctypes.c_char, PAYLOAD_BYTES + 1) for _ in range(RING)]
        self._commands = shared.RawArray(ctypes.c_int, RING)
        self._numbers = shared.RawArray(ctypes.c_int64, RING * 2)

    def post(self, order: Order) -> None:
        at = self._written.value % RING
        self._tickets[at].value = order.ticket.encode()[:TICKET_BYTES]
        self._payloads[at].value = order.payload.encode()[:PAYLOAD_BYTES]
        self._commands[at] = _KNOWN.index(order.command)
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
                                _KNOWN[self._commands[at]], self._numbers[2 * at],
                                self._numbers[2 * at + 1],
                                self._payloads[at].value.decode(errors="replace")))
        return orders, written


class Steering:
    """A prefork worker's shared memory for worker-wide commands: the pool's size and
    an :class:`Outbox` per child slot. Made before the first fork; the supervisor adds
    an outbox for a new slot before it forks that slot's child."""

    def __init__(self, size: int) -> None:
        self._size = shared.RawValue(ctypes.c_int, size)
        self._ticket = shared.RawArray(ctypes.c_char, TICKET_BYTES + 1)
        self._before = shared.RawValue(ctypes.c_int, size)
        self.outboxes: list[Outbox] = []
        self._read: list[int] = []
        self._done: deque[str] = deque(maxlen=REMEMBERED)

    def size(self) -> int:
        return int(self._size.value)

    def size_before(self, ticket: str) -> int:
        """The size before the command ``ticket`` resized the pool, else the size now:
        every child answers a broadcast, and one slower than a sibling whose order was
        already carried out must judge the request as the sibling did."""
        if ticket and self._ticket.value == ticket.encode()[:TICKET_BYTES]:
            return int(self._before.value)
        return self.size()

    def resized(self, size: int, ticket: str = "") -> None:
        """The pool is now ``size``; ``ticket``: the command that resized it. A resize of
        the supervisor's own (a signal, the autoscaler) leaves the remembered command
        and its size before as they were, for children still answering it."""
        if ticket:
            self._ticket.value = b""  # while the pair below changes, no ticket matches
            self._before.value = self._size.value
            self._ticket.value = ticket.encode()[:TICKET_BYTES]
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

    def size_before(self, ticket: str) -> int:
        return self.steering.size_before(ticket)

    def carry_out(self, order: Order) -> None:
        self._outbox.post(order)

    def adjusted(self, command: str, arguments: dict[str, Any], ticket: str) -> None:
        payload = json.dumps(arguments, separators=(",", ":"))
        if len(payload.encode()) > PAYLOAD_BYTES:
            log.warning("adjustment not kept for replacement children: arguments too long",
                        command=command)
            return
        self._outbox.post(Order(ticket, command, payload=payload))


class OwnOrders:
    """A worker of its own (threads, asyncio, solo): it stops and writes its heartbeat
    itself. A threads worker resizes its pool itself too (``scaler``,
    worker/threadscale.py); the asyncio and solo pools keep their size and refuse."""

    def __init__(self, pool: str, size: int, stop: Callable[[], None],
                 heartbeat: Callable[[], object],
                 queues_now: Callable[[list[str]], None] = lambda _queues: None,
                 queues: list[str] | None = None, scaler: ThreadScaler | None = None) -> None:
        """``queues_now``: told the routes consumed after an add/cancel_consumer."""
        self.pool = pool
        self._size = size
        self._stop = stop
        self._heartbeat = heartbeat
        self._queues_now = queues_now
        self.adjustments = Adjustments(queues)
        self.scaler = scaler

    def size(self) -> int:
        return self.scaler.size() if self.scaler is not None else self._size

    def size_before(self, _ticket: str) -> int:
        return self.size()  # one process answers: nobody acted on the ticket before it

    def carry_out(self, order: Order) -> None:
        if order.command == SHUTDOWN:
            self._stop()
        elif order.command == HEARTBEAT:
            self._heartbeat()
        elif self.scaler is None:
            raise ValueError(f"{order.command}: the {self.pool} pool has a fixed size "
                             "(restart it with another -c, or run -P prefork or threads)")
        elif order.command == GROW:
            self.scaler.grow(order.first, "pool_grow")
        elif order.command == SHRINK:
            self.scaler.shrink(order.first, "pool_shrink")
        elif order.command == AUTOSCALE:
            self.scaler.set_autoscale(order.first, order.second)

    def adjusted(self, command: str, arguments: dict[str, Any], ticket: str) -> None:
        if self.adjustments.record(command, arguments):
            self._queues_now(self.adjustments.queues)


class Adjustments:
    """A worker's adjustments that a new process must repeat: the latest per task
    (rate and time limits), per queue (added or cancelled) and for the events switch,
    in the order they were last made; and the queues consumed after them."""

    def __init__(self, queues: list[str] | None = None) -> None:
        self._latest: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self.queues = list(queues or [])

    def record(self, command: str, arguments: dict[str, Any]) -> bool:
        """Keep it; True when it changed the queues consumed."""
        key = _subject(command, arguments)
        self._latest.pop(key, None)
        self._latest[key] = (command, dict(arguments))
        queue = str(arguments.get("queue"))
        if command == "add_consumer" and queue not in self.queues:
            self.queues.append(queue)
            return True
        if command == "cancel_consumer" and queue in self.queues:
            self.queues.remove(queue)
            return True
        return False

    def replay(self) -> list[tuple[str, dict[str, Any]]]:
        return list(self._latest.values())


def _subject(command: str, arguments: dict[str, Any]) -> tuple[str, str]:
    """What an adjustment is about: a later one about the same thing replaces it."""
    if command in ("rate_limit", "time_limit"):
        return command, str(arguments.get("task_name"))
    if command in ("add_consumer", "cancel_consumer"):
        return "consumer", str(arguments.get("queue"))
    return "events", ""


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
    size = orders.size_before(node.ticket)
    if orders.pool in ("prefork", "threads") and size - count < 1:
        what = "children" if orders.pool == "prefork" else "threads"
        raise ValueError(f"pool_shrink: the pool has {size} {what} and keeps "
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
    return {"ok": "heartbeat will be written"}


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
