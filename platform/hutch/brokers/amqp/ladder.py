"""The delay ladder's arithmetic: levels, queue TTLs and names, routing and binding keys.

Pure functions, no I/O; :class:`hutch.brokers.amqp.topology.Topology` turns them into
declaration steps and publish targets, and docs/topology.md draws the result.

A delay is a whole number of ticks of :data:`~hutch.messages.DELAY_TICK`
(1/8 s), written in octal. Level L stands for the digit worth ``8**L`` ticks
(level 0: 125-875 ms, level 1: 1-7 s, level 2: 8-56 s, ...) and has one queue
per non-zero digit value D, with the fixed TTL of D times that, dead-lettering
to level L-1 (level 0 to the final hop). The routing key is the route
(escaped into one topic word) followed by the digits, least significant
first::

    ticks = 0o123 (10.375 s) for route "priority.high"  ->  "priority%2Ehigh.3.2.1"

The publisher sends it straight to the level of its highest digit (here 2):
level L's exchange reads word L+2 and sends the message into the queue of that
digit, or, for ``0``, on to level L-1 at once. So a message waits in exactly
one queue per non-zero digit, and its key holds only the digits it needs.

Why octal and short keys, measured on 2 cores with RabbitMQ 3.10 for 10,000
countdowns of 1-10 s (docs/performance.md): a 28-word binary key published
through all 28 levels cost RabbitMQ about 9 ms of CPU per message and capped
publishing near 120-600 msg/s, since topic matching costs grow with the words
of the key and the exchanges it crosses. Every queue a message waits in costs
a persistent enqueue and a dead-lettering (~0.4 ms of broker CPU), so digits
of 8 (2.0 queues per message for these delays) beat bits at 1/8 s resolution
(3.2 queues) by a third of the broker's CPU.
"""

from __future__ import annotations

import math

from ...messages import DELAY_TICK, MAX_DELAY_SECONDS

RADIX = 8
MAX_TICKS = math.ceil(MAX_DELAY_SECONDS / DELAY_TICK)
LEVELS = len(format(MAX_TICKS, "o"))
"""11 levels: the highest one's digit is worth 2**27 s."""

_TICK_MS = round(DELAY_TICK * 1000)
_ESCAPES = {"%": "%25", ".": "%2E", "*": "%2A", "#": "%23"}


def digits(ticks: int) -> list[int]:
    """The octal digits of ``ticks``, least significant first."""
    out = []
    while ticks:
        ticks, digit = divmod(ticks, RADIX)
        out.append(digit)
    return out


def level_digits(level: int) -> range:
    """The digit values level ``level`` has a queue for (all but 0, up to the reach)."""
    return range(1, min(RADIX - 1, MAX_TICKS // RADIX**level) + 1)


def queue_ttl_ms(level: int, digit: int) -> int:
    """The TTL of the queue for ``digit`` at ``level``, in milliseconds."""
    return int(digit * RADIX**level * _TICK_MS)


def queue_suffix(level: int, digit: int) -> str:
    """A queue's name part, its TTL: ``125ms`` ... ``875ms``, ``1s`` ... ``134217728s``."""
    ms = queue_ttl_ms(level, digit)
    return f"{ms}ms" if ms < 1000 else f"{ms // 1000}s"


def route_word(route: str) -> str:
    """The route as exactly one topic word: ``%``, ``.``, ``*`` and ``#`` percent-escaped,
    so ``work`` never matches ``work.high`` and a route named ``#`` matches only itself."""
    return "".join(_ESCAPES.get(char, char) for char in route)


def routing_key(route: str, ticks: int) -> tuple[int, str]:
    """(first level, routing key) of a message delayed ``ticks`` ticks (``ticks`` > 0)."""
    if not 0 < ticks <= MAX_TICKS:
        raise ValueError(f"a delay of {ticks} ticks is outside the ladder")
    spelled = digits(ticks)
    return len(spelled) - 1, ".".join([route_word(route), *map(str, spelled)])


def hold_binding(level: int, digit: int) -> str:
    """Binding key sending a message into ``digit``'s queue at ``level``."""
    return "*." * (level + 1) + f"{digit}.#"


def pass_binding(level: int) -> str:
    """Binding key passing a message whose digit at ``level`` is 0 straight to the level below."""
    return "*." * (level + 1) + "0.#"


def deliver_binding(route: str) -> str:
    """Binding key of the final hop into route ``route``'s work queue."""
    return route_word(route) + ".#"
