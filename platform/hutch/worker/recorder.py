"""Group-commit of task state changes, then follow-ups, then acknowledgements.

Every outcome goes through one thread that writes all the changes waiting at
that moment in a single transaction (a state change that arrives while a write
is in flight simply joins the next one). Only after the commit does it publish
follow-up messages (link callbacks) and acknowledge the deliveries, so a crash
at any point leaves the message in RabbitMQ to be redelivered: nothing is lost.
Database or broker outages are retried with backoff, never dropped, and logged
once when they begin and once when they end (worker/health.py).

RECEIVED claims (worker/claims.py) are committed by a writer of their own, so a
delivery's check does not queue behind a batch of outcomes. The recorder also
says when a task may start (:meth:`Recorder.wait_until_answering`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .. import publishing
from ..brokers.base import NOTICE_UNADDRESSED, Broker
from ..errors import BrokerError
from ..logs import get_logger
from ..messages import Carried, Wire, encode_notice
from ..results.groups import Done
from ..results.records import READY_STATES, Applied, StateChange
from ..results.store import ResultStore
from ..workflows.plan import GroupRow
from .batching import next_batch
from .chords import ChordKeeper, Outcome
from .claims import Claim, ClaimWriter
from .counters import Counters
from .health import Outage, StoreWatch, retrying

log = get_logger("hutch.worker")

LINGER = 0.05
CARRY_BATCH_MAX = 100
"""Outcomes in a batch up to which its completion notice carries their small results."""
WAIT_STEP = 0.25
"""How often a task start waiting on the result store looks for a stop."""


@dataclass
class Entry:
    change: StateChange | None
    followups: Sequence[tuple[str, Wire]] = ()
    children: Sequence[StateChange] = ()
    then: Callable[[], None] | None = None
    flushed: threading.Event | None = field(default=None)
    groups: Sequence[GroupRow] = ()
    chord: Done | None = None
    published: Callable[[], None] | None = None
    notify: str | None = None
    """The key of the client that sent the task (TaskMessage.notify), for its notice."""


class Recorder:
    """Owns the result-writing thread of one worker process."""

    def __init__(self, store: ResultStore, broker: Broker, batch_max: int, *,
                 chords: ChordKeeper, counters: Counters | None = None,
                 durable_claims: bool = True) -> None:
        """``chords`` stores the groups that follow-ups create and counts chord header
        outcomes, in the same transaction as the batch; ``counters`` counts every
        outcome recorded (the heartbeat's processed/succeeded/failed/retried);
        ``durable_claims=False``: claims commit without waiting for PostgreSQL's WAL
        flush (``worker_claim_synchronous_commit``, worker/claims.py)."""
        self.counters = counters or Counters()
        self.store = store
        self.chords = chords
        self._broker = broker
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[Entry | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hutch-recorder", daemon=True)
        self._stopping = threading.Event()
        self.watch = StoreWatch()
        self._broker_down = Outage(
            "broker unreachable: follow-up tasks and acknowledgements wait",
            "broker answers again: follow-ups and acknowledgements resume")
        self._claims = ClaimWriter(store, self.watch, batch_max, durable=durable_claims)

    @property
    def broker(self) -> Broker:
        """Where follow-ups go (the executor puts refused messages' copies there too)."""
        return self._broker

    def start(self) -> None:
        self._thread.start()
        self._claims.start()

    def record(self, change: StateChange | None, followups: Sequence[tuple[str, Wire]] = (),
               then: Callable[[], None] | None = None,
               children: Sequence[StateChange] = (), groups: Sequence[GroupRow] = (),
               chord: Done | None = None, published: Callable[[], None] | None = None,
               notify: str | None = None) -> None:
        """Queue a change; ``followups`` are published and ``then`` runs after it commits.

        ``children`` are the PENDING rows of the follow-ups, committed in the same
        transaction so ``result.children`` is complete the moment ``get()`` returns;
        ``groups`` are the group rows the follow-ups need, and ``chord`` says a chord
        header task finished (counted in that transaction, worker/chords.py).
        ``published`` runs once the follow-ups are confirmed (after_task_publish).
        ``notify``: the key the change's completion notice goes under (the message's).
        """
        if change is not None:
            self.counters.outcome(change.state)
        self._queue.put(Entry(change, followups, children, then, groups=groups, chord=chord,
                              published=published, notify=notify))

    def claim(self, received: StateChange, here: bool = False) -> Claim:
        """Queue a delivery's RECEIVED change as its claim (worker/claims.py); ``here``:
        leave it to the pool thread that takes the delivery (:meth:`claim_here`)."""
        return self._claims.add(received, here)

    def claim_here(self, claim: Claim) -> None:
        """Write a claim made with ``here`` in this thread (worker/claims.py)."""
        self._claims.write_here(claim)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything recorded so far is committed and acknowledged."""
        return self._flush_marker().wait(timeout)

    def _flush_marker(self) -> threading.Event:
        done = threading.Event()
        self._queue.put(Entry(None, flushed=done))
        return done

    def wait_until_answering(self, stop: threading.Event) -> bool:
        """Before a task starts: True once the result store answers, False if ``stop``
        was set first. Free while commits keep succeeding (worker/health.py);
        otherwise it waits until everything recorded so far is committed, for as long
        as the store does not answer."""
        if self.watch.answering():
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
        self._claims.stop(timeout)

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
        return next_batch(self._queue, self._batch_max, _urgent, LINGER)

    def _commit(self, batch: list[Entry]) -> None:
        changes = [c for e in batch for c in ([e.change] if e.change else []) + list(e.children)]
        groups = [g for e in batch for g in e.groups]
        events = [e.chord for e in batch if e.chord is not None]
        extra, carry = Outcome(), Applied()
        if groups or events:
            counted = self.watch.call("record task states and chords", lambda: self.chords.count(
                self.store, changes, groups, events))
            extra = counted.plus(self.watch.call("claim complete chords", lambda: self.chords.claim(
                self.store, events, counted)))
        elif changes:
            self.watch.call("record task states", lambda: self.store.write(
                changes, carry=carry if _carries(changes) else None))
        bodies = publishing.before(extra.followups, self.chords.prefix, None)
        followups = [f for e in batch for f in e.followups] + bodies
        if followups:
            retrying("publish follow-up tasks", lambda: self._broker.publish(followups),
                     self._broker_down)
            self._published(batch, bodies)
        if extra.sent:
            self.watch.call("mark chord bodies sent",
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
        self._notify(_addressed(batch, extra.finished), carry.carried)

    def _published(self, batch: list[Entry], bodies: list[tuple[str, Wire]]) -> None:
        """after_task_publish for the executor's follow-ups and the chord bodies (and
        their errbacks), whose before_task_publish this thread sent: the last header
        task's thread has moved on by the time its chord is found complete."""
        for entry in batch:
            if entry.published is not None:
                entry.published()
        publishing.after(bodies, self.chords.prefix)

    def _notify(self, addressed: dict[str, list[str]], carried: dict[str, Carried]) -> None:
        """One notice per client key, each carrying its own ids' outcomes."""
        for key, task_ids in addressed.items():
            own = carried if len(addressed) == 1 or not carried \
                else {i: carried[i] for i in task_ids if i in carried}
            try:
                self._broker.publish_notice(encode_notice(task_ids, own), key)
            except BrokerError as exc:
                log.debug("completion notice not sent", error=str(exc))


def _addressed(batch: list[Entry],
               finished: list[tuple[str | None, str]]) -> dict[str, list[str]]:
    """The ids a batch finished, by the key of the client that sent them: an entry's
    children (its workflow's later steps, ended with it) go to its sender too, and the
    bodies of the chords a batch failed to the chord's sender."""
    out: dict[str, list[str]] = {}
    for entry in batch:
        key = entry.notify or NOTICE_UNADDRESSED
        change = entry.change
        if change is not None and change.state in READY_STATES:
            out.setdefault(key, []).append(change.task_id)
        for child in entry.children:
            if child.state in READY_STATES:
                out.setdefault(key, []).append(child.task_id)
    for sender, task_id in finished:
        out.setdefault(sender or NOTICE_UNADDRESSED, []).append(task_id)
    return out


def _carries(changes: list[StateChange]) -> bool:
    """Whether the batch's notice carries its small results (hutch.messages.Carried): a
    batch of at most CARRY_BATCH_MAX outcomes, where a waiting ``get()`` is spared a
    read; a larger one (a backlog, where latency is queueing) saves the worker the
    returned rows (about 10 µs a task)."""
    return 0 < sum(c.state in READY_STATES for c in changes) <= CARRY_BATCH_MAX


def _urgent(entry: Entry) -> bool:
    """Someone waits on this entry: an acknowledgement or a flush."""
    return entry.then is not None or entry.flushed is not None
