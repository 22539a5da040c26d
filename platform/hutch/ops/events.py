"""Reading task events live: ``hutch events`` and the dashboard share :class:`EventReceiver`.

A receiver subscribes to the broker's task-events channel (``P.task-events`` on
RabbitMQ, docs/topology.md) and sees what is sent after it subscribed, nothing
older: events are for live views, the tables are the record. Each event is the
JSON object of docs/protocol.md ("Task events") plus ``local_received``, the
receiver's clock when it arrived (Celery's name), so a view can tell lag from age.
Filters run in the subscriber's thread, before anything is queued.
"""

from __future__ import annotations

import fnmatch
import queue
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..brokers.base import TASK_EVENTS, FanOut, SubscriptionHandle
from ..messages import TASK_EVENT_TYPES, decode_events

Event = dict[str, Any]

STATE_TYPES = {"PENDING": "task-sent", "SENT": "task-sent", "RECEIVED": "task-received",
               "STARTED": "task-started", "SUCCESS": "task-succeeded",
               "FAILURE": "task-failed", "RETRY": "task-retried", "REVOKED": "task-revoked",
               "REJECTED": "task-rejected"}
"""The event type each task state (hutch_tasks.state) is entered with, for ``--state``."""


def event_type(name: str) -> str:
    """``task-failed``, ``failed`` or ``FAILURE`` -> ``task-failed``; ValueError if none."""
    if name.upper() in STATE_TYPES:
        return STATE_TYPES[name.upper()]
    full = name.lower() if name.lower().startswith("task-") else f"task-{name.lower()}"
    if full not in TASK_EVENT_TYPES:
        raise ValueError(f"unknown event type or state {name!r}; one of "
                         f"{', '.join(TASK_EVENT_TYPES)} or {', '.join(STATE_TYPES)}")
    return full


class EventFilter:
    """Which events to keep: task names and workers match exactly or as shell globs
    (``tasks.*``, ``*@web1``); types as :func:`event_type` reads them. None keeps all."""

    def __init__(self, tasks: Iterable[str] = (), types: Iterable[str] = (),
                 workers: Iterable[str] = ()) -> None:
        self.tasks, self.workers = tuple(tasks), tuple(workers)
        self.types = frozenset(event_type(t) for t in types)

    def __call__(self, event: Event) -> bool:
        if self.types and event.get("type") not in self.types:
            return False
        if self.tasks and not _matches(event.get("name"), self.tasks):
            return False
        return not self.workers or _matches(event.get("hostname"), self.workers)


def _matches(value: Any, patterns: tuple[str, ...]) -> bool:
    return isinstance(value, str) and any(fnmatch.fnmatchcase(value, p) for p in patterns)


class EventReceiver:
    """Task events from ``broker``, as a callback or an iterator.

    ``with EventReceiver(broker) as events: for event in events: ...`` (iterating
    blocks; ``next_event(timeout)`` returns None on a timeout), or
    ``EventReceiver(broker, on_event=handler).start()`` to have ``handler(event)``
    called in the subscriber's thread. Subscribed once :meth:`start` returns.
    ``raw``: events exactly as sent, without ``local_received``."""

    def __init__(self, broker: FanOut, *, on_event: Callable[[Event], None] | None = None,
                 keep: Callable[[Event], bool] | None = None, raw: bool = False) -> None:
        self._broker = broker
        self._on_event = on_event
        self._keep = keep or EventFilter()
        self._raw = raw
        self._queue: queue.Queue[Event] = queue.Queue()
        self._handle: SubscriptionHandle | None = None

    def start(self) -> EventReceiver:
        if self._handle is None:
            self._handle = self._broker.subscribe(TASK_EVENTS, self._deliver)
        return self

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()

    def __enter__(self) -> EventReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _deliver(self, body: bytes) -> None:
        now = time.time()
        for event in decode_events(body):
            if not self._keep(event):
                continue
            if not self._raw:
                event["local_received"] = now
            if self._on_event is not None:
                self._on_event(event)
            else:
                self._queue.put(event)

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next kept event, waiting up to ``timeout`` seconds (None: for ever)."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def __iter__(self) -> Iterator[Event]:
        while True:
            # short waits rather than one endless get(): a KeyboardInterrupt is raised
            # between them, in the caller's loop, not inside a blocking wait
            event = self.next_event(0.5)
            if event is not None:
                yield event


def describe(event: Event) -> str:
    """One readable line: time, type, task, worker, then what this type carries."""
    stamp = event.get("timestamp")
    when = time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp * 1000) % 1000:03d}" \
        if isinstance(stamp, (int, float)) else "--:--:--.---"
    kind = str(event.get("type", "?")).removeprefix("task-")
    head = f"{when} {kind:<9} {event.get('name') or '?'}[{event.get('uuid') or '?'}]"
    details = [f"{key}={_short(event[key])}" for key in _DETAILS.get(str(event.get("type")), ())
               if event.get(key) not in (None, "", False, "()", "{}")]
    return " ".join([head, f"@ {event.get('hostname', '?')}", *details])


_DETAILS: dict[str, tuple[str, ...]] = {
    "task-sent": ("args", "kwargs", "queue", "eta", "expires", "retries"),
    "task-received": ("args", "kwargs", "retries", "eta"),
    "task-started": ("pid",),
    "task-succeeded": ("runtime", "result"),
    "task-failed": ("exception",),
    "task-retried": ("exception", "retries"),
    "task-revoked": ("terminated", "expired"),
    "task-rejected": ("reason", "requeue"),
}


def _short(value: Any, limit: int = 120) -> str:
    text = f"{value:.4f}s" if isinstance(value, float) else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
