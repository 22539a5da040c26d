"""Group-commit of task state changes, then follow-ups, then acknowledgements.

Every outcome goes through one thread that writes all the changes waiting at
that moment in a single transaction (a state change that arrives while a write
is in flight simply joins the next one). Only after the commit does it publish
follow-up messages (link callbacks) and acknowledge the deliveries, so a crash
at any point leaves the message in RabbitMQ to be redelivered: nothing is lost.
Database or broker outages are retried with backoff, never dropped, and logged
once when they begin and once when they end.

The recorder also says when a task may start (:meth:`Recorder.wait_until_answering`):
a task whose outcome cannot be written should not run, so while the result store
does not answer, no new task starts; the running ones finish and their outcomes
wait here. A worker killed during an outage then runs again only the tasks that
were running (and the last batch of outcomes that did not get through), never
its whole prefetch.
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
from ..results.records import READY_STATES, RECEIVED, Claims, Seen, StateChange
from ..results.store import ResultStore
from ..results.waiter import encode_notice
from ..workflows.plan import GroupRow
from .chords import ChordKeeper, Outcome
from .claims import Claim

log = structlog.get_logger("hutch.worker")

T = TypeVar("T")

MAX_BACKOFF = 5.0
LINGER = 0.05
FRESH = 0.1
"""A task starts at once while a commit succeeded this recently (tasks shorter than this
keep the batches full); after a longer task, it first waits for the outcomes recorded
so far, a commit of a few milliseconds, so an unreachable store stops it."""
STALL = 0.1
"""A commit still unanswered after this long holds new tasks back until it is answered."""
WAIT_STEP = 0.25
"""How often a waiting task start looks for a stop."""


@dataclass
class Entry:
    change: StateChange | None
    followups: Sequence[tuple[str, Wire]] = ()
    children: Sequence[StateChange] = ()
    then: Callable[[], None] | None = None
    flushed: threading.Event | None = field(default=None)
    groups: Sequence[GroupRow] = ()
    chord: Done | None = None
    claim: Claim | None = None


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
        self._store_down = Outage(
            "result store unreachable: running tasks finish, no new task starts until "
            "it answers", "result store answers again: tasks start again")
        self._broker_down = Outage(
            "broker unreachable: follow-up tasks and acknowledgements wait",
            "broker answers again: follow-ups and acknowledgements resume")
        self._answered_at = time.monotonic()
        self._asking_since: float | None = None

    @property
    def broker(self) -> Broker:
        """Where follow-ups go (the executor puts refused messages' copies there too)."""
        return self._broker

    def start(self) -> None:
        self._thread.start()

    def record(self, change: StateChange | None, followups: Sequence[tuple[str, Wire]] = (),
               then: Callable[[], None] | None = None,
               children: Sequence[StateChange] = (), groups: Sequence[GroupRow] = (),
               chord: Done | None = None, claim: Claim | None = None) -> None:
        """Queue a change; ``followups`` are published and ``then`` runs after it commits.

        ``children`` are the PENDING rows of the follow-ups, committed in the same
        transaction so ``result.children`` is complete the moment ``get()`` returns;
        ``groups`` are the group rows the follow-ups need, and ``chord`` says a chord
        header task finished (counted in that transaction, worker/chords.py).
        ``claim`` (with a RECEIVED change) is settled with what the write found
        (worker/claims.py).
        """
        self._queue.put(Entry(change, followups, children, then, groups=groups, chord=chord,
                              claim=claim))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything recorded so far is committed and acknowledged."""
        return self._flush_marker().wait(timeout)

    def _flush_marker(self) -> threading.Event:
        done = threading.Event()
        self._queue.put(Entry(None, flushed=done))
        return done

    def wait_until_answering(self, stop: threading.Event) -> bool:
        """Before a task starts: True once the result store answers, False if ``stop``
        was set first. Free while commits keep succeeding (see FRESH and STALL);
        otherwise it waits until everything recorded so far is committed, for as long
        as the store does not answer."""
        now = time.monotonic()
        asking = self._asking_since
        if not self._store_down.active and now - self._answered_at < FRESH and (
                asking is None or now - asking < STALL):
            return True
        done = self._flush_marker()
        while not done.wait(WAIT_STEP):
            if stop.is_set():
                return False
        return True

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
        """The next batch. A progress-only change (STARTED) that nobody waits on lingers
        up to LINGER seconds, so a fast task's STARTED shares one commit with its
        outcome instead of costing a transaction of its own."""
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
        claimed = [e for e in batch if e.claim is not None and e.change is not None]
        claims = Claims(frozenset(e.change.task_id for e in claimed)) if claimed else None
        extra = Outcome()
        if groups or events:
            assert self.chords is not None, "a recorder with chord work needs a ChordKeeper"
            counted = self._storing("record task states and chords", lambda: self.chords.count(
                self.store, changes, groups, events, claims))
            extra = counted.plus(self._storing("claim complete chords", lambda: self.chords.claim(
                self.store, events, counted)))
        elif changes:
            self._storing("record task states", lambda: self.store.write(changes, claims=claims))
        if claims is not None:
            _settle_claims(claimed, claims)
        followups = [f for e in batch for f in e.followups] + extra.followups
        if followups:
            self._retrying("publish follow-up tasks", lambda: self._broker.publish(followups),
                           self._broker_down)
        if extra.sent:
            self._storing("mark chord bodies sent",
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

    def _storing(self, what: str, action: Callable[[], T]) -> T:
        """A result-store action, timed for :meth:`wait_until_answering`."""
        self._asking_since = time.monotonic()
        try:
            value = self._retrying(what, action, self._store_down)
        finally:
            self._asking_since = None
        self._answered_at = time.monotonic()
        return value

    def _retrying(self, what: str, action: Callable[[], T], outage: Outage) -> T:
        delay = 0.1
        while True:
            try:
                value = action()
            except (BackendError, BrokerError) as exc:
                outage.begins(what, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            outage.ends()
            return value


class Outage:
    """One log line when a dependency stops answering and one when it answers again;
    the retries in between are logged at debug level only."""

    def __init__(self, began: str, ended: str) -> None:
        self._began, self._ended = began, ended
        self._since: float | None = None

    @property
    def active(self) -> bool:
        return self._since is not None

    def begins(self, what: str, exc: BaseException, retry_in: float) -> None:
        if self._since is None:
            self._since = time.monotonic()
            log.warning(self._began, action=what, error=str(exc))
        else:
            log.debug(f"could not {what}; retrying", error=str(exc), retry_in=retry_in)

    def ends(self) -> None:
        if self._since is not None:
            log.warning(self._ended, down_for=round(time.monotonic() - self._since, 3))
            self._since = None


def _settle_claims(claimed: list[Entry], claims: Claims) -> None:
    """Tell each claim what its RECEIVED write found. Two deliveries of one id in the
    same batch: the first one's write applied, the others find it received."""
    first: set[str] = set()
    for entry in claimed:
        assert entry.change is not None and entry.claim is not None
        task_id = entry.change.task_id
        seen = claims.found.get(task_id)
        if seen is None and task_id in first:
            seen = Seen(RECEIVED, entry.change.retries)
        first.add(task_id)
        entry.claim.settle(seen)


def _urgent(entry: Entry) -> bool:
    """Someone waits on this entry: an acknowledgement, a claim or a flush."""
    return entry.then is not None or entry.flushed is not None or entry.claim is not None
