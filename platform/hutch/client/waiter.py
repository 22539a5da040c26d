"""Wake ``AsyncResult.get()`` the moment a worker commits a result.

Workers publish a small notice (the ids they just committed) on the broker's
events exchange after every result transaction. A waiter subscribes once per
client, and ``get()`` re-reads the row only when its id is announced, so waiting
costs no database polling. A slow fallback re-read (once a second) covers a
notice lost to a broker restart.

The waiter also remembers the last ANNOUNCED_MAX ids announced since it
subscribed, so ``get()`` on a task this client sent while subscribed can skip
its first read: an id not announced since then cannot be finished yet, and
waiting for its notice goes first (docs/performance.md, the round trip).

A notice may carry a task's SUCCESS outcome as stored (hutch.messages.Carried):
the waiter keeps it for an id being waited on, and ``get()`` returns it with no
read at all.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from ..brokers.base import EventsHandle, FanOut
from ..logs import get_logger
from ..messages import Carried, read_notice

log = get_logger("hutch.results")

FALLBACK_RECHECK = 1.0
ANNOUNCED_MAX = 10_000
"""Ids remembered as announced (each about 100 bytes): a task sent more than this
many announcements before its ``get()`` is read first, as any other."""
Mark = tuple[object, int]
"""(subscription, ids announced on it so far): see :meth:`CompletionWaiter.mark`."""


class CompletionWaiter:
    """Per-client subscription that turns notices into per-task wake-ups."""

    def __init__(self, broker: FanOut) -> None:
        self._broker = broker
        self._lock = threading.Lock()
        self._watching: dict[str, list[threading.Event]] = defaultdict(list)
        self._handle: EventsHandle | None = None
        self._announced: dict[str, None] = {}  # insertion-ordered: the oldest go first
        self._count = 0  # ids announced since subscribing, repeats included
        self._session: object | None = None  # one per subscription
        self._carried: dict[str, Carried] = {}  # outcomes of ids being waited on

    def mark(self) -> Mark | None:
        """Where the announcements stand, taken just before publishing a task: None
        unless subscribed (a notice sent before subscribing is never seen)."""
        with self._lock:
            return None if self._session is None else (self._session, self._count)

    def announced_since(self, task_id: str, mark: Mark) -> bool:
        """Whether ``task_id`` may have been announced since ``mark``: True when it was,
        when too many ids came since for the memory to tell, or when the mark is from
        another subscription (or another waiter) than the live one."""
        session, count = mark
        with self._lock:
            return session is not self._session or task_id in self._announced \
                or self._count - count > ANNOUNCED_MAX

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

    def carried(self, task_id: str) -> Carried | None:
        """The outcome a notice carried for ``task_id`` while it was watched, if any."""
        with self._lock:
            return self._carried.get(task_id)

    def unwatch(self, task_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._watching.get(task_id)
            if events and event in events:
                events.remove(event)
                if not events:
                    del self._watching[task_id]
                    self._carried.pop(task_id, None)

    def close(self) -> None:
        with self._lock:
            self._session = None  # notices from now on are not seen
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _ensure_subscribed(self) -> None:
        if self._handle is None:
            with self._lock:
                if self._handle is None:
                    self._handle = self._broker.subscribe_events(self._on_notice)
                    self._session = object()

    def _on_notice(self, body: bytes) -> None:
        notice = read_notice(body)
        ids = notice.ids
        with self._lock:
            for task_id in ids:
                if task_id in self._watching and (outcome := notice.carried(task_id)):
                    self._carried[task_id] = outcome
            for task_id in ids:
                self._announced.pop(task_id, None)
                self._announced[task_id] = None
            self._count += len(ids)
            while len(self._announced) > ANNOUNCED_MAX:
                del self._announced[next(iter(self._announced))]
            woken = [e for i in ids for e in self._watching.get(i, ())]
        for event in woken:
            event.set()
