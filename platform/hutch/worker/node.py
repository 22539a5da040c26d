"""What a worker process tells about itself when asked (worker/remote.py): the
:class:`Node` every control command is a function of, with the request's arguments."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..brokers.base import ConsumerHandle
    from .counters import Counters
    from .executor import Executor


@dataclass
class Node:
    """What a worker process tells about itself: ``hostname`` (``name@host``), the pool
    the operator chose and its concurrency, and for a prefork child its index."""

    hostname: str
    pool: str
    concurrency: int
    child: int | None
    prefetch: int
    broker_url: str
    executor: Executor
    counters: Counters
    queues: tuple[str, ...] = ()
    started: float = field(default_factory=time.monotonic)
    orders: Orders | None = None
    """Where worker-wide commands go (worker/steering.py); None: refused."""
    ticket: str = ""
    """The ticket of the request being answered (a worker-wide command carries it to the
    prefork supervisor, which acts once per ticket whichever children post it)."""
    consumer: ConsumerHandle | None = None
    """Set once consuming: what add_consumer/cancel_consumer change (worker/adjustments.py)."""

    def size(self) -> int:
        """The pool's size now (``concurrency`` is what it started with)."""
        return self.orders.size() if self.orders is not None else self.concurrency

    @property
    def of(self) -> int:
        """How many processes of this worker answer: every prefork child, else one."""
        return self.size() if self.child is not None else 1

    @property
    def worker_pid(self) -> int:
        """The worker's main process: a prefork child's supervisor, else this one."""
        return os.getppid() if self.child is not None else os.getpid()


Command = Callable[[Node, dict[str, Any]], Any]


@dataclass(frozen=True)
class Order:
    """One command for the supervisor: ``ticket`` of the request, ``command`` of
    worker/steering.py's ``ORDERS`` with up to two numbers (``n``; autoscale's ``max`` and ``min``), or
    of its ``ADJUSTMENTS`` with its arguments as JSON (``payload``)."""

    ticket: str
    command: str
    first: int = 0
    second: int = 0
    payload: str = ""


class Orders(Protocol):
    """Where a worker process sends the worker-wide commands it receives."""

    pool: str

    def size(self) -> int:
        """How many processes run tasks now (a prefork worker's children)."""

    def size_before(self, ticket: str) -> int:
        """The size before the command ``ticket`` changed it, else the size now."""

    def carry_out(self, order: Order) -> None:
        """Act on ``order`` (a prefork child: hand it to the supervisor); raises
        ValueError for what this worker cannot do."""

    def adjusted(self, command: str, arguments: dict[str, Any], ticket: str) -> None:
        """This process made an adjustment (worker/adjustments.py): keep it for later
        processes of the worker (a prefork child: tell the supervisor)."""
