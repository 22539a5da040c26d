"""``--autoscale MAX,MIN``: prefork children (or threads: threadscale.py) follow the load.

The supervisor sees each child's slot (busy running a task, or idle) and nothing
of the queues, so the rule is about its children: while every child is busy the
pool grows by one child a second, up to ``maximum``; a child idle for
``keepalive`` seconds is stopped, down to ``minimum``. A task waiting in RabbitMQ
reaches a new child at once (each child prefetches for itself), and a grown pool
that finds nothing to do shrinks back after the keepalive, as Celery's does.
A threads worker applies the same rule to its threads (worker/threadscale.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

GROW_EVERY = 1.0
"""Seconds between two growth steps while every child stays busy."""


def check_bounds(maximum: int, minimum: int) -> None:
    if not 1 <= minimum <= maximum:
        raise ValueError(f"autoscale max={maximum} min={minimum}: needs 1 <= min <= max")


@dataclass
class Autoscaler:
    """The bounds, and what it saw: when each idle child became idle."""

    maximum: int
    minimum: int
    keepalive: float
    _idle_since: dict[int, float] = field(default_factory=dict)
    _grown_at: float = float("-inf")

    def bounds(self, maximum: int, minimum: int) -> None:
        check_bounds(maximum, minimum)
        self.maximum, self.minimum = maximum, minimum

    def decide(self, busy: Mapping[int, bool], now: float) -> tuple[int, list[int]]:
        """Given each living child's slot and whether it is busy: how many children to
        add, and which idle slots to stop (at most one per call)."""
        size = len(busy)
        for slot, running in busy.items():
            if running:
                self._idle_since.pop(slot, None)
            else:
                self._idle_since.setdefault(slot, now)
        for gone in set(self._idle_since) - set(busy):
            del self._idle_since[gone]
        if size < self.minimum:
            return self.minimum - size, []
        if size > self.maximum:
            return 0, self._idlest(size - self.maximum, busy)
        if size and all(busy.values()) and size < self.maximum \
                and now - self._grown_at >= GROW_EVERY:
            self._grown_at = now
            return 1, []
        tired = [s for s, since in self._idle_since.items() if now - since >= self.keepalive]
        if tired and size > self.minimum:
            return 0, self._idlest(1, {s: False for s in tired})
        return 0, []

    def _idlest(self, count: int, busy: Mapping[int, bool]) -> list[int]:
        """Up to ``count`` slots to stop: idle ones first (longest idle), then the
        highest slots."""
        ranked = sorted(busy, key=lambda s: (busy[s], self._idle_since.get(s, float("inf")), -s))
        return ranked[:count]
