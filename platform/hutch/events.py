"""Sending task events: task-sent from the producers, the rest from the worker's executor.

Events are for live views (``hutch events``, the dashboard); the SQL tables stay the
record. So sending one is fire and forget and never fails or slows a task: the body
is a small JSON object (hutch.messages.encode_event, Celery's field names), handed to
the broker's fan-out publisher, which sends it from its own I/O thread; a broker that
cannot take it drops it, and the drops are counted and logged as a warning (the first
one, then every :data:`WARN_EVERY`-th), never raised. docs/protocol.md lists each
event's fields, docs/topology.md the ``P.task-events`` exchange they travel on.

A worker sends three or more events per task, so it batches them (as Celery's worker
buffers its task events): one message carries a JSON array of the events sent within
:data:`BATCH_SECONDS`, or :data:`BATCH_MAX` of them, which cuts the publishes, the
broker's routing and every reader's deliveries by that factor. A batched event is kept
as its fields until the batch leaves, and the batch is encoded by one ``json.dumps``
(the same bytes as joining each event's encoding, at about half its CPU). A
client sends its task-sent at once, ahead of the task message, so readers see it first.

Outside a dashboard session nobody reads task events, and RabbitMQ would parse, route
to no queue and drop every message. So the worker's and the synchronous client's
messages probe (published ``mandatory``): when one comes back unread, ``FanOut.heard``
says so for ``UNHEARD_PAUSE`` (1 s) and the emitter builds no event meanwhile
(:meth:`TaskEvents.wanted`); the first one built after the pause probes again. A
reader that binds misses at most that second (plus a batch) of each sender's events.
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
    encode_events,
    event_repr,
    received_event_fields,
    utcoffset_hours,
)

log = get_logger("hutch.events")

WARN_EVERY = 1000
"""After the first dropped event, one warning per this many more."""

BATCH_SECONDS = 0.1
"""The longest a worker holds an event before sending it: live enough for a view."""
BATCH_MAX = 100
"""Events per message at most: a full batch is sent at once."""

HEARD_RECHECK = 0.05
"""Seconds an emitter keeps the broker's answer to "is a reader bound?" before asking
again: small beside UNHEARD_PAUSE, so a reader that binds still misses at most about a
second of events."""

_clock = itertools.count(1)
"""The process's logical clock (Celery's ``clock`` field): increases with every event
sent here, so a reader can order one sender's events whose timestamps tie."""


class TaskEvents:
    """Builds and sends task events for one sender (a worker process, a client).

    ``send`` returns False when the event was dropped; a disabled emitter (``enabled``
    False, or no ``publish``) builds nothing and costs one attribute test per call."""

    def __init__(self, publish: Callable[[bytes], bool] | None, hostname: str,
                 enabled: bool = True, batch_seconds: float = 0.0,
                 heard: Callable[[], bool] | None = None) -> None:
        self._publish = publish
        self._heard = heard or _always
        self._heard_now, self._recheck_at = True, 0.0
        self.hostname = hostname
        self.enabled = enabled and publish is not None
        self.dropped = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._utcoffset = utcoffset_hours()
        self._batch_seconds = batch_seconds
        self._buffer: list[dict[str, Any]] = []
        self._wake = threading.Condition(self._lock)
        self._drops = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._closed = False

    @classmethod
    def on(cls, fanout: FanOut, hostname: str, enabled: bool = True,
           batch_seconds: float = 0.0, probe: bool = False) -> TaskEvents:
        """An emitter sending on ``fanout``'s task-events channel; ``probe``: its
        messages probe for a reader, and while ``fanout.heard`` says none is bound the
        emitter builds no event (see the module's docstring)."""
        return cls(lambda body: fanout.broadcast(TASK_EVENTS, body, probe=probe), hostname,
                   enabled, batch_seconds,
                   heard=(lambda: fanout.heard(TASK_EVENTS)) if probe else None)

    @classmethod
    def for_worker(cls, fanout: FanOut, hostname: str, enabled: bool) -> TaskEvents:
        """A worker process's emitter: batched, and probing (see the module's docstring)."""
        return cls.on(fanout, hostname, enabled, BATCH_SECONDS, probe=True)

    def wanted(self) -> bool:
        """Whether an event is worth building now: sending is on and, as far as the
        broker has told, a reader may be bound. The broker is asked at most once per
        HEARD_RECHECK (a worker asks three times a task)."""
        if not self.enabled:
            return False
        now = time.monotonic()
        if now >= self._recheck_at:
            self._heard_now, self._recheck_at = self._heard(), now + HEARD_RECHECK
        return self._heard_now

    def body(self, event_type: str, fields: dict[str, Any]) -> bytes:
        """One event's encoded body, with the fields every event carries (Celery's)."""
        return encode_event(self._event(event_type, fields))

    def _event(self, event_type: str, fields: dict[str, Any]) -> dict[str, Any]:
        """The event as its fields, stamped now (its time and clock are when it was sent)."""
        return {"type": event_type, **fields, "hostname": self.hostname,
                "timestamp": time.time(), "utcoffset": self._utcoffset, "pid": self._pid,
                "clock": next(_clock)}

    def send(self, event_type: str, fields: dict[str, Any], now: bool = False) -> bool:
        """Send one event (batched: queue it; ``now``: send the batch with it at once);
        False if disabled or dropped. Never raises. A batched event's ``fields`` are
        encoded when its batch leaves, so they hold values that do not change (text,
        numbers), as every caller here passes."""
        if not self.enabled:
            return False
        if self._batch_seconds > 0:
            return self._queue(self._event(event_type, fields), now)
        try:
            body = self.body(event_type, fields)
        except Exception as exc:  # noqa: BLE001 - an event must never fail its task
            self.count_drop(event_type, f"{type(exc).__name__}: {exc}")
            return False
        return self._deliver(body, event_type, 1)

    def _deliver(self, body: bytes, what: str, count: int) -> bool:
        try:
            if self._publish is not None and self._publish(body):
                return True
            error = "the broker did not take it"
        except Exception as exc:  # noqa: BLE001 - an event must never fail its task
            error = f"{type(exc).__name__}: {exc}"
        self.count_drop(what, error, count)
        return False

    def count_drop(self, event_type: str, error: str, count: int = 1) -> None:
        """Count lost events; warn on the first and once per WARN_EVERY more."""
        with self._drops:
            before, self.dropped = self.dropped, self.dropped + count
            dropped = self.dropped
        if before == 0 or before // WARN_EVERY != dropped // WARN_EVERY:
            log.warning("task event dropped", event_type=event_type, events_dropped=dropped,
                        error=error)

    def switch(self, on: bool) -> bool:
        """Turn sending on or off in a running worker (``hutch control enable_events``);
        whether that changed anything. RuntimeError for an emitter with nowhere to send."""
        if on and self._publish is None:
            raise RuntimeError("this process has no task-event publisher")
        changed, self.enabled = self.enabled != on, on
        return changed

    # -- batching (workers) -----------------------------------------------------------
    def _queue(self, event: dict[str, Any], now: bool) -> bool:
        with self._lock:
            self._buffer.append(event)
            if now or self._closed or len(self._buffer) >= BATCH_MAX:
                return self._flush_locked()
            if len(self._buffer) == 1:
                self._wake.notify()  # the flusher starts its batch's clock
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop,
                                                 name="hutch-task-events", daemon=True)
                self._flusher.start()
        return True

    def _flush_locked(self) -> bool:
        """Send what is buffered as one message; called holding ``_lock``, so batches
        leave in the order their events were sent whichever thread sends them (handing
        a body to the broker's publisher is a queue append, so the lock is short)."""
        batch, self._buffer = self._buffer, []
        if not batch:
            return True
        body = self._encoded(batch)
        return body is None or self._deliver(body, "batch", len(batch))

    def _encoded(self, batch: list[dict[str, Any]]) -> bytes | None:
        """The batch as one message body, in one ``json.dumps``; should that fail (a
        field nothing can encode), each event alone, the failing ones dropped and
        counted; None if none is left."""
        try:
            return encode_events(batch)
        except Exception:  # noqa: BLE001 - an event must never fail its task
            pass
        bodies = []
        for event in batch:
            try:
                bodies.append(encode_event(event))
            except Exception as exc:  # noqa: BLE001 - see above
                self.count_drop(str(event.get("type")), f"{type(exc).__name__}: {exc}")
        return joined(bodies) if bodies else None

    def send_bodies(self, bodies: list[bytes]) -> bool:
        """Send already built events (a client's task-sent for one ``send``) at once, as
        one message; False if disabled or dropped."""
        return self.enabled and bool(bodies) and self._deliver(joined(bodies), "batch",
                                                                len(bodies))

    def _flush_loop(self) -> None:
        while True:
            with self._lock:
                while not self._buffer and not self._closed:
                    self._wake.wait()  # idle: no wake-ups until an event comes
                if not self._closed:
                    self._wake.wait(self._batch_seconds)
                closed = self._closed
                self._flush_locked()
            if closed:
                return

    def close(self, timeout: float = 5.0) -> None:
        """Send what is batched and stop the flusher (a worker process stopping)."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            flusher = self._flusher
        if flusher is not None:
            flusher.join(timeout)

    # -- one call per state point (worker/executor.py) ----------------------------------
    def received(self, m: TaskMessage) -> bool:
        return self.wanted() and self.send("task-received", received_event_fields(m))

    def started(self, m: TaskMessage) -> bool:
        return self.wanted() and self.send("task-started", {"uuid": m.id, "name": m.task})

    def succeeded(self, m: TaskMessage, result: Any, runtime: float) -> bool:
        return self.wanted() and self.send("task-succeeded", {
            "uuid": m.id, "name": m.task, "result": event_repr(result),
            "runtime": runtime})

    def failed(self, m: TaskMessage, exc: BaseException, traceback: str | None) -> bool:
        return self.wanted() and self.send("task-failed", {
            "uuid": m.id, "name": m.task, "exception": event_repr(exc),
            "traceback": traceback})

    def retried(self, m: TaskMessage, exc: BaseException, traceback: str | None) -> bool:
        """Sent at once, with the batch: the next attempt is published after it on the
        same channel and may run in another process, whose events must come later."""
        return self.wanted() and self.send("task-retried", {
            "uuid": m.id, "name": m.task, "exception": event_repr(exc),
            "traceback": traceback, "retries": m.retries}, now=True)

    def revoked(self, m: TaskMessage, reason: str, signum: int | None = None) -> bool:
        """``reason``: revoked, expired or terminated (the REVOKED row's message)."""
        return self.wanted() and self.send("task-revoked", {
            "uuid": m.id, "name": m.task, "terminated": reason == "terminated",
            "signum": signum, "expired": reason == "expired"})

    def rejected(self, task_id: str | None, name: str | None, reason: str,
                 requeue: bool = False) -> bool:
        """A message the worker refused (dead-lettered): ``uuid`` may be None when the
        message carried no readable id."""
        return self.wanted() and self.send("task-rejected", {
            "uuid": task_id, "name": name, "requeue": requeue, "reason": reason})


def _always() -> bool:
    return True


def joined(bodies: list[bytes]) -> bytes:
    """Several encoded events as one message body: one event alone, else an array."""
    return bodies[0] if len(bodies) == 1 else b"[" + b",".join(bodies) + b"]"


NO_EVENTS = TaskEvents(None, socket.gethostname(), enabled=False)
"""The emitter of a sender with events off: every call returns False at once."""
