"""Sending task events: task-sent from the producers, the rest from the worker's executor.

Events are for live views (``hutch events``, the dashboard); the SQL tables stay the
record. So sending one is fire and forget and never fails or slows a task: the body
is a small JSON object (hutch.messages.encode_event, Celery's field names), handed to
the broker's fan-out publisher, which sends it from its own I/O thread; a broker that
cannot take it drops it, and the drops are counted and logged as a warning (the first
one, then every :data:`WARN_EVERY`-th), never raised. docs/protocol.md lists each
event's fields, docs/topology.md the ``P.task-events`` exchange they travel on.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .brokers.base import TASK_EVENTS, FanOut
from .logs import get_logger
from .messages import (
    TaskMessage,
    encode_event,
    event_repr,
    received_event_fields,
    sent_event_fields,
    utcoffset_hours,
)

log = get_logger("hutch.events")

WARN_EVERY = 1000
"""After the first dropped event, one warning per this many more."""

_clock = itertools.count(1)
"""The process's logical clock (Celery's ``clock`` field): increases with every event
sent here, so a reader can order one sender's events whose timestamps tie."""


class TaskEvents:
    """Builds and sends task events for one sender (a worker process, a client).

    ``send`` returns False when the event was dropped; a disabled emitter (``enabled``
    False, or no ``publish``) builds nothing and costs one attribute test per call."""

    def __init__(self, publish: Callable[[bytes], bool] | None, hostname: str,
                 enabled: bool = True) -> None:
        self._publish = publish
        self.hostname = hostname
        self.enabled = enabled and publish is not None
        self.dropped = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._utcoffset = utcoffset_hours()

    @classmethod
    def on(cls, fanout: FanOut, hostname: str, enabled: bool = True) -> TaskEvents:
        """An emitter sending on ``fanout``'s task-events channel."""
        return cls(lambda body: fanout.broadcast(TASK_EVENTS, body), hostname, enabled)

    def body(self, event_type: str, fields: dict[str, Any]) -> bytes:
        """One event's encoded body, with the fields every event carries (Celery's)."""
        return encode_event({"type": event_type, **fields, "hostname": self.hostname,
                             "timestamp": time.time(), "utcoffset": self._utcoffset,
                             "pid": self._pid, "clock": next(_clock)})

    def send(self, event_type: str, fields: dict[str, Any]) -> bool:
        """Send one event; False if disabled or dropped. Never raises."""
        if not self.enabled or self._publish is None:
            return False
        try:
            if self._publish(self.body(event_type, fields)):
                return True
            error = "the broker did not take it"
        except Exception as exc:  # noqa: BLE001 - an event must never fail its task
            error = f"{type(exc).__name__}: {exc}"
        self.count_drop(event_type, error)
        return False

    def count_drop(self, event_type: str, error: str) -> None:
        """Count one lost event; warn on the first and every WARN_EVERY-th."""
        with self._lock:
            self.dropped += 1
            dropped = self.dropped
        if dropped == 1 or dropped % WARN_EVERY == 0:
            log.warning("task event dropped", event_type=event_type, events_dropped=dropped,
                        error=error)

    # -- one call per state point (client/base.py, worker/executor.py) ------------------
    def sent(self, m: TaskMessage, exchange: str) -> bool:
        return self.enabled and self.send("task-sent", sent_event_fields(m, exchange))

    def received(self, m: TaskMessage) -> bool:
        return self.enabled and self.send("task-received", received_event_fields(m))

    def started(self, m: TaskMessage) -> bool:
        return self.enabled and self.send("task-started", {"uuid": m.id, "name": m.task})

    def succeeded(self, m: TaskMessage, result: Any, runtime: float) -> bool:
        return self.enabled and self.send("task-succeeded", {
            "uuid": m.id, "name": m.task, "result": event_repr(result),
            "runtime": runtime})

    def failed(self, m: TaskMessage, exc: BaseException, traceback: str | None) -> bool:
        return self.enabled and self.send("task-failed", {
            "uuid": m.id, "name": m.task, "exception": event_repr(exc),
            "traceback": traceback})

    def retried(self, m: TaskMessage, exc: BaseException, traceback: str | None) -> bool:
        return self.enabled and self.send("task-retried", {
            "uuid": m.id, "name": m.task, "exception": event_repr(exc),
            "traceback": traceback, "retries": m.retries})

    def revoked(self, m: TaskMessage, reason: str, signum: int | None = None) -> bool:
        """``reason``: revoked, expired or terminated (the REVOKED row's message)."""
        return self.enabled and self.send("task-revoked", {
            "uuid": m.id, "name": m.task, "terminated": reason == "terminated",
            "signum": signum, "expired": reason == "expired"})

    def rejected(self, task_id: str | None, name: str | None, reason: str,
                 requeue: bool = False) -> bool:
        """A message the worker refused (dead-lettered): ``uuid`` may be None when the
        message carried no readable id."""
        return self.enabled and self.send("task-rejected", {
            "uuid": task_id, "name": name, "requeue": requeue, "reason": reason})


NO_EVENTS = TaskEvents(None, socket.gethostname(), enabled=False)
"""The emitter of a sender with events off: every call returns False at once."""
