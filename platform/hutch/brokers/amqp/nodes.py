"""The RabbitMQ nodes one connection may use, and the order it tries them in.

``broker_url`` may name several nodes of a cluster (a list, or ``;``-separated as
kombu writes it). Each connection of a process (publisher, consumer, events,
control, admin) holds its own :class:`Nodes`: it stays on a node while that node
answers, and moves to the next one when a connect fails or an open connection
drops, so a dead node costs one failed attempt, not an outage. ``round-robin``
tries the nodes as listed; ``shuffle`` draws an order once per :class:`Nodes`, so
many processes given the same list spread over the cluster.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pika

from ...config import Settings
from .params import BrokerAddress, address_aio_kwargs, address_parameters, parse_urls

T = TypeVar("T")


class Nodes:
    """One connection's view of the cluster: the node to use now, and the next."""

    def __init__(self, url: str, settings: Settings, role: str) -> None:
        """``url``: ``broker_url`` (ConfigurationError, password masked, if one is bad)."""
        self._order = parse_urls(url)
        if settings.broker_failover_strategy == "shuffle":
            random.shuffle(self._order)
        self._settings, self._role = settings, role
        self._at = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._order)

    @property
    def current(self) -> BrokerAddress:
        with self._lock:
            return self._order[self._at]

    @property
    def masked(self) -> str:
        """The node in use, as messages about it show it (password masked)."""
        return self.current.masked

    @property
    def every(self) -> str:
        """All the nodes, for a message that none of them answered."""
        return " or ".join(address.masked for address in self._order)

    def params(self) -> pika.ConnectionParameters:
        """pika's parameters for the node to try now."""
        return address_parameters(self.current, self._settings, self._role)

    def aio_kwargs(self) -> dict[str, Any]:
        """aio-pika's connect keywords for the node to try now."""
        return address_aio_kwargs(self.current, self._settings, self._role)

    def failed(self) -> None:
        """A connect to the current node failed or its connection dropped: next time,
        try the next node (the same one again when there is only one)."""
        with self._lock:
            self._at = (self._at + 1) % len(self._order)

    def first_answering(self, connect: Callable[[pika.ConnectionParameters], T]) -> T:
        """``connect(params)`` on each node in turn, from the current one, until one
        answers; the last node's error when none does (name them with :attr:`every`)."""
        for attempt in range(len(self._order)):
            try:
                return connect(self.params())
            except (pika.exceptions.AMQPError, OSError):
                self.failed()
                if attempt == len(self._order) - 1:
                    raise
        raise AssertionError("unreachable")
