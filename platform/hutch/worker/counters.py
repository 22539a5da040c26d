"""What one worker process has done, counted: for its log lines now, for heartbeats and
the dashboard later. Safe to add to from any pool thread."""

from __future__ import annotations

import threading

DUPLICATES = "duplicates_skipped"
"""Deliveries of a task id that had finished already, acknowledged without running."""


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> int:
        """Add to ``name``; returns its new total."""
        with self._lock:
            total = self._counts[name] = self._counts.get(name, 0) + amount
        return total

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
