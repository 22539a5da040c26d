"""Group-commit of task state changes, then follow-ups, then acknowledgements.

Every outcome goes through one thread that writes all the changes waiting at
that moment in a single transaction (a state change that arrives while a write
is in flight simply joins the next one). Only after the commit does it publish
follow-up messages (link callbacks) and acknowledge the deliveries, so a crash
at any point leaves the message in RabbitMQ to be redelivered: nothing is lost.
Database or broker outages are retried with backoff, never dropped.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from ..brokers.base import Broker
from ..errors import BackendError, BrokerError
from ..messages import Wire
from ..results.groups import Done
from ..results.records import READY_STATES, StateChange
from ..results.store import ResultStore
from ..results.waiter import encode_notice
from ..workflows.plan import GroupRow
from .chords import ChordKeeper, Outcome

log = structlog.get_logger("hutch.worker")

T = TypeVar("T")

MAX_BACKOFF = 5.0
LINGER = 0.05


@dataclass
class Entry:
    change: StateChange | None
    followups: Sequence[tuple[str, Wire]] = ()
    children: Sequence[StateChange] = ()
    then: Callable[[], None] | None = None
    flushed: threading.Event | None = field(default=None)
    groups: Sequence[GroupRow] = ()
    chord: Done | None = None


class Recorder:
    """Owns the result-writing thread of one worker process."""

    def __init__(self, store: ResultStore, broker: Broker, batch_max: int = 500,
                 chords: ChordKeeper | None = None) -> None:
        """``chords`` stores the groups that follow-ups create and counts chord header
        outcomes, in the same transaction as the batch (the Executor gives the
        recorder one if it has none)."""
        self.store = store
        self.chords = chords
        self._broker = broker
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[Entry | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hutch-recorder", daemon=True)
        self._stopping = threading.Event()

    @property
    def broker(self) -> Broker:
        """Where follow-ups go (the executor puts refused messages' copies there too)."""
        return self._broker

    def start(self) -> None:
        self._thread.start()

    def record(self, change: StateChange | None, followups: Sequence[tuple[str, Wire]] = (),
               then: Callable[[], None] | None = None,
               children: Sequence[StateChange] = (), groups: Sequence[GroupRow] = (),
               chord: Done | None = None) -> None:
        """Queue a change; ``followups`` are published and ``then`` runs after it commits.

        ``children`` are the PENDING rows of the follow-ups, committed in the same
        transaction so ``result.children`` is complete the moment ``get()`` returns;
        ``groups`` are the group rows the follow-ups need, and ``chord`` says a chord
        header task finished (counted in that transaction, worker/chords.py).
        """
        self._queue.put(Entry(change, followups, children, then, groups=groups, chord=chord))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything recorded so far is committed and acknowledged."""
        done = threading.Event()
        self._queue.put(Entry(None, flushed=done))
        return done.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)

    # -- the writer thread ----------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            batch = self._take()
            if batch is None:
                return
            self._commit(batch)

    def _take(self) -> list[Entry] | None:
        """The next batch. Progress-only changes (RECEIVED, STARTED) that nobody waits on
        linger up to LINGER seconds, so a fast task's states share one commit with its
        outcome instead of costing a transaction each."""
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + LINGER
        urgent = _urgent(first)
        while len(batch) < self._batch_max:
            wait = 0.0 if urgent else deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
            urgent = urgent or _urgent(item)
        return batch

    def _commit(self, batch: list[Entry]) -> None:
        changes = [c for e in batch for c in ([e.change] if e.change else []) + list(e.children)]
        groups = [g for e in batch for g in e.groups]
        events = [e.chord for e in batch if e.chord is not None]
        extra = Outcome()
        if groups or events:
            assert self.chords is not None, "a recorder with chord work needs a ChordKeeper"
            counted = self._retrying("record task states and chords", lambda: self.chords.count(
                self.store, changes, groups, events))
            extra = counted.plus(self._retrying("claim complete chords", lambda: self.chords.claim(
                self.store, events, counted)))
        elif changes:
            self._retrying("record task states", lambda: self.store.write(changes))
        followups = [f for e in batch for f in e.followups] + extra.followups
        if followups:
            self._retrying("publish follow-up tasks", lambda: self._broker.publish(followups))
        if extra.sent:
            self._retrying("mark chord bodies sent",
                           lambda: self.chords.mark_sent(self.store, extra.sent))
        for entry in batch:
            if entry.then is not None:
                try:
                    entry.then()
                except Exception as exc:  # noqa: BLE001 - an ack failing must not stop recording
                    log.warning("acknowledgement failed; the broker will redeliver",
                                error=str(exc))
            if entry.flushed is not None:
                entry.flushed.set()
        done = [c.task_id for c in changes if c.state in READY_STATES] + extra.finished
        if done:
            self._notify(done)

    def _notify(self, task_ids: list[str]) -> None:
        try:
            self._broker.publish_event(encode_notice(task_ids))
        except BrokerError as exc:
            log.debug("completion notice not sent", error=str(exc))

    def _retrying(self, what: str, action: Callable[[], T]) -> T:
        delay = 0.1
        while True:
            try:
                return action()
            except (BackendError, BrokerError) as exc:
                log.warning(f"could not {what}; retrying", error=str(exc), retry_in=delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)


def _urgent(entry: Entry) -> bool:
    """Someone waits on this entry: an acknowledgement or a flush."""
    return entry.then is not None or entry.flushed is not None
