"""How long a long-lived connection (worker consumer, events, control) waits between
reconnect attempts while RabbitMQ is away.

A refused connect costs next to nothing, and every second spent waiting after
RabbitMQ is back is a second in which no task runs, so the delay starts small and
is capped low: whatever the length of an outage, a connection is back within
``RECONNECT_MAX`` seconds (plus the handshake) of the broker accepting connections.
Each delay is drawn between half and all of its nominal value, so many workers
that lost the broker together do not all reconnect in the same instant. The
owner calls :meth:`Backoff.reset` once its connection is up and consuming again,
so each outage starts from the smallest delay, not from where the last one ended.
"""

from __future__ import annotations

import random

RECONNECT_FIRST = 0.1
"""Nominal delay before the first reconnect attempt after a connection is lost (s)."""
RECONNECT_MAX = 1.0
"""Cap on the nominal delay between two attempts (s)."""
QUEUE_DOWN_RETRY_MAX = 2.0
"""Cap on the delay between declares of a queue whose cluster node is down (s): a
refused declare costs one round trip, and the route is consumed again within this
long of its node coming back."""
REFUSED_RETRY = 10.0
"""Seconds between attempts while RabbitMQ refuses the login or the virtual host: a
person fixes credentials, waiting does not, and a tight loop would only fill the
broker's log. A long-lived connection keeps trying so it comes back by itself once
they are fixed."""


class Backoff:
    """Exponential delays (doubling from ``first`` up to ``cap``) with jitter."""

    def __init__(self, first: float = RECONNECT_FIRST, cap: float = RECONNECT_MAX) -> None:
        self.first, self.cap = first, cap
        self.failures = 0

    def next_delay(self) -> float:
        """Count one more failed attempt; seconds to wait before the next one."""
        nominal = min(self.cap, self.first * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return nominal * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography

    def reset(self) -> None:
        """The connection works again: the next outage starts from ``first``."""
        self.failures = 0
