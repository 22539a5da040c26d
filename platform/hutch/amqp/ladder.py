"""The delay ladder's arithmetic: level TTLs and names, routing keys, binding keys.

Pure functions, no I/O; :class:`hutch.amqp.topology.Topology` turns them into
declaration steps and publish targets, and docs/topology.md draws the result.

Level L holds a message ``2**L`` ticks of :data:`~hutch.messages.DELAY_TICK`
seconds (1/8 s up to 2**27 s). A delay of ``n`` ticks is spelled in the
routing key as the route (escaped into one word) followed by the bits of
``n``, least significant first::

    n = 10 ticks (1.25 s) for route "priority.high"  ->  "priority%2Ehigh.0.1.0.1"

The publisher sends it straight to the level of the highest set bit (here
level 3), so the key is as short as the delay needs: RabbitMQ's topic matching
costs grow with the number of words and of exchanges a message crosses, and a
fixed 28-word key through 28 exchanges capped publishing near 300-600 msg/s.
Level L reads word L+2 (after the route word and L lower bits): ``1`` holds
the message in the level's queue, ``0`` passes it on to level L-1 at once.
Every level's queue dead-letters to the level below, level 0's to the final
hop, which hands the message to the work queue whose route word leads its key.
"""

from __future__ import annotations

from ..messages import DELAY_LEVELS, DELAY_TICK

_ESCAPES = {"%": "%25", ".": "%2E", "*": "%2A", "#": "%23"}


def level_ttl_ms(level: int) -> int:
    """The TTL of level ``level``'s queue, in milliseconds (125 ms, 250 ms, ... 2**27 s)."""
    return round(2**level * DELAY_TICK * 1000)


def level_suffix(level: int) -> str:
    """The name part of a level, its TTL: ``125ms`` ... ``500ms``, ``1s`` ... ``134217728s``."""
    ms = level_ttl_ms(level)
    return f"{ms}ms" if ms < 1000 else f"{ms // 1000}s"


def route_word(route: str) -> str:
    """The route as exactly one topic word: ``%``, ``.``, ``*`` and ``#`` percent-escaped,
    so ``work`` never matches ``work.high`` and a route named ``#`` matches only itself."""
    return "".join(_ESCAPES.get(char, char) for char in route)


def routing_key(route: str, ticks: int) -> tuple[int, str]:
    """(first level, routing key) of a message delayed ``ticks`` ticks (``ticks`` > 0)."""
    if not 0 < ticks < 2**DELAY_LEVELS:
        raise ValueError(f"a delay of {ticks} ticks is outside the ladder")
    bits = format(ticks, "b")[::-1]  # least significant first
    return len(bits) - 1, ".".join([route_word(route), *bits])


def hold_binding(level: int) -> str:
    """Binding key sending a message into level ``level``'s queue: its bit is 1."""
    return "*." * (level + 1) + "1.#"


def pass_binding(level: int) -> str:
    """Binding key passing a message from level ``level`` straight to the one below."""
    return "*." * (level + 1) + "0.#"


def deliver_binding(route: str) -> str:
    """Binding key of the final hop into route ``route``'s work queue."""
    return route_word(route) + ".#"
