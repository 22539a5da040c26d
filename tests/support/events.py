"""Collecting task events in a test: an EventReceiver whose events land in a list."""

from __future__ import annotations

import threading
from typing import Any

from hutch.brokers.base import FanOut
from hutch.ops.events import EventFilter, EventReceiver

from .waiting import eventually

LIFECYCLE = ["task-sent", "task-received", "task-started", "task-succeeded"]
COMMON = {"type", "uuid", "hostname", "timestamp", "utcoffset", "pid", "clock",
          "local_received"}


class Events:
    """Every task event after ``start``, kept in arrival order."""

    def __init__(self, broker: FanOut, **filters: Any) -> None:
        self.items: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.receiver = EventReceiver(broker, on_event=self._add, keep=EventFilter(**filters))

    def _add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.items.append(event)

    def __enter__(self) -> Events:
        self.receiver.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.receiver.close()

    def of(self, task_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.items if e.get("uuid") == task_id]

    def types_of(self, task_id: str) -> list[str]:
        return [e["type"] for e in self.of(task_id)]

    def wait_for(self, task_id: str, last: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The task's events once one of type ``last`` arrived (all seen so far if not)."""
        eventually(lambda: last in self.types_of(task_id), timeout)
        return self.of(task_id)


def by_type(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["type"]: e for e in events}
