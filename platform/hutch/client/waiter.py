"""Wake ``AsyncResult.get()`` the moment a worker commits a result.

Workers publish a small notice (the ids they just committed) on the broker's
events exchange after every result transaction. A waiter subscribes once per
client, and ``get()`` re-reads the row only when its id is announced, so waiting
costs no database polling. A slow fallback re-read (once a second) covers a
notice lost to a broker restart.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from ..brokers.base import EventsHandle, FanOut
from ..logs import get_logger
from ..messages import decode_notice

log = get_logger("hutch.results")

FALLBACK_RECHECK = 1.0


class CompletionWaiter:
    """Per-client subscription that turns notices into per-task wake-ups."""

    def __init__(self, broker: FanOut) -> None:
        self._broker = broker
        self._lock = threading.Lock()
        self._watching: dict[str, list[threading.Event]] = defaultdict(list)
        self._handle: EventsHandle | None = None

    def watch_many(self, task_ids: list[str]) -> threading.Event:
        """One event set when any of ``task_ids`` is announced (GroupResult.get)."""
        self._ensure_subscribed()
        event = threading.Event()
        with self._lock:
            for task_id in task_ids:
                self._watching[task_id].append(event)
        return event

    def unwatch_many(self, task_ids: list[str], event: threading.Event) -> None:
        for task_id in task_ids:
            self.unwatch(task_id, event)

    def unwatch(self, task_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._watching.get(task_id)
            if events and event in events:
                events.remove(event)
                if not events:
                    del self._watching[task_id]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _ensure_subscribed(self) -> None:
        if self._handle is None:
            with self._lock:
                if self._handle is None:
                    self._handle = self._broker.subscribe_events(self._on_notice)

    def _on_notice(self, body: bytes) -> None:
        ids = decode_notice(body)
        with self._lock:
            woken = [e for i in ids for e in self._watching.get(i, ())]
        for event in woken:
            event.set()
