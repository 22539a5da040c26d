"""Claims: the RECEIVED write that tells a delivery whether its task id may run.

A task id runs once. Every delivery already costs a RECEIVED row, written as it
arrives (consumer thread) and committed by the recorder in the same batches as
everything else. That upsert returns the ids it applied to, so it doubles as the
check: a RECEIVED change applies when the row is absent, PENDING or an earlier
attempt; when it does not, the store reads back the row that kept it out
(:class:`~hutch.results.records.Claims`). No extra round trip for a first
delivery, one small read for the rare one that meets a row further along.

Claims are committed by a :class:`ClaimWriter`, a thread and connection of their
own, as soon as they arrive (all waiting claims in one transaction): a claim
queued behind a batch of outcomes would keep its delivery from running for
a commit longer, and the prefetch window would run dry. Before a delivery runs,
its pool thread waits for the claim (normally committed long before, while the
delivery sat in the prefetch) and the executor decides:

- the claim applied: run; so does a claim that finds its own RECEIVED change (a
  commit whose answer a database crash or a broken connection lost, written again
  once the store is back: :func:`is_own`);
- it found a finished row (SUCCESS, FAILURE, REVOKED): acknowledge without
  running, logged and counted (a client's re-sent publish, a copy of a finished
  task, a redelivery after a worker died between its commit and its ack);
- it found the same attempt received or started: a copy published again after a
  crash (``republished``) is acknowledged; a redelivery goes to the poison guard
  (hutch.worker.poison); anything else runs, as before.

Deliveries of ``ignore_result`` tasks have no row and no claim.

With ``worker_claim_synchronous_commit`` off, a claim's commit on PostgreSQL returns
before its WAL is flushed (about 1 ms less before each task starts where a flush costs
that). Visibility is unchanged: every other session sees the claim at once. What a
PostgreSQL crash (not a clean restart) can then cost: claims committed in the last
moments before it (at most 3 x ``wal_writer_delay``, 0.6 s by default, and only those
no later synchronous commit on the server flushed, such as the task's own outcome)
are lost, the rows as they were before (absent, PENDING, or the earlier attempt). The
task itself is not lost: its delivery is acked only after its outcome commits
(synchronously), and its STARTED and outcome rows are written in full when the
database is back. But the claim no longer keeps a second copy of that task id out: a
copy (a re-sent publish, a redelivery) delivered after the restart, while the first
run has not committed its outcome, runs as well.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from typing import TYPE_CHECKING

from ..brokers.base import ForwardingDelivery
from ..errors import BackendError
from ..results.records import RECEIVED, Claims, Seen, StateChange
from .batching import next_batch

if TYPE_CHECKING:
    from ..brokers.base import Delivery
    from ..results.store import ResultStore
    from .health import StoreWatch


class Claim:
    """The outcome of one delivery's RECEIVED write, settled by the claim writer.

    A latch rather than a ``threading.Event``: one is made per delivery, and a lock
    taken at birth and released once settled costs a tenth of an Event's Condition.
    ``here`` is the RECEIVED change of a claim not queued: the pool thread that takes
    the delivery writes it itself (:meth:`ClaimWriter.write_here`)."""

    __slots__ = ("_latch", "here", "settled", "seen")

    def __init__(self, here: StateChange | None = None) -> None:
        self._latch = threading.Lock()
        self._latch.acquire()
        self.here = here
        self.settled = False
        self.seen: Seen | None = None
        """The row that kept the RECEIVED change out; None when it applied."""

    def settle(self, seen: Seen | None) -> None:
        self.seen = seen
        self.settled = True
        self._latch.release()

    def wait(self, timeout: float) -> bool:
        if self.settled:
            return True
        if self._latch.acquire(timeout=timeout):
            self._latch.release()
            return True
        return False


class ClaimedDelivery(ForwardingDelivery):
    """A delivery carrying its claim, so the claim follows it through the pool and back
    (a rate-limit hold hands it over again).

    ``received_at`` is when this delivery arrived: its STARTED change carries it too,
    since a redelivery's RECEIVED change does not apply to a row already STARTED and
    the row must show the run that may finish (docs/dba.md)."""

    def __init__(self, delivery: Delivery, claim: Claim, received_at: dt.datetime) -> None:
        super().__init__(delivery)
        self.claim = claim
        self.received_at = received_at

    def __repr__(self) -> str:
        return f"<claimed {self.delivery!r}>"


def claim_of(delivery: Delivery) -> Claim | None:
    return delivery.claim if isinstance(delivery, ClaimedDelivery) else None


def received_at_of(delivery: Delivery) -> dt.datetime | None:
    return delivery.received_at if isinstance(delivery, ClaimedDelivery) else None


class ClaimWriter:
    """Commits RECEIVED claims on a thread of its own, every waiting claim in one
    transaction, retried while the store is down (a delivery waits meanwhile).
    ``durable=False``: on PostgreSQL the commit does not wait for the WAL flush (see
    the module docstring)."""

    def __init__(self, store: ResultStore, watch: StoreWatch, batch_max: int,
                 durable: bool = True) -> None:
        self._store, self._watch, self._batch_max = store, watch, batch_max
        self._durable = durable
        self._queue: queue.SimpleQueue[tuple[StateChange, Claim] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hutch-claims", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, received: StateChange, here: bool = False) -> Claim:
        """Queue ``received`` as a claim; ``here``: do not, the pool thread that takes
        the delivery writes it (:meth:`write_here`)."""
        if here:
            return Claim(received)
        claim = Claim()
        self._queue.put((received, claim))
        return claim

    def write_here(self, claim: Claim) -> None:
        """Write a claim made with ``here`` in the calling thread (a pool thread that was
        idle when its delivery arrived: a hand-over to this writer's thread and back
        would only add two thread wake-ups before the task starts). Tried once: if the
        store fails, the claim goes to the writer's thread, which retries it while the
        store is down and logs the outage (the caller waits for it as for any claim)."""
        received, claim.here = claim.here, None
        if received is None:
            return
        claims = Claims(frozenset({received.task_id}), durable=self._durable)
        try:
            self._store.write([received], claims=claims)
        except BackendError:
            self._queue.put((received, claim))
            return
        settle([(received, claim)], claims)

    def stop(self, timeout: float | None = None) -> None:
        """Claims still queued are dropped: their deliveries go back to the queue."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (batch := next_batch(self._queue, self._batch_max)) is not None:
            self._commit(batch)

    def _commit(self, batch: list[tuple[StateChange, Claim]]) -> None:
        changes = [change for change, _ in batch]
        claims = Claims(frozenset(change.task_id for change in changes), durable=self._durable)
        self._watch.call("record received tasks",
                         lambda: self._store.write(changes, claims=claims), outcomes=False)
        settle(batch, claims)


def settle(batch: list[tuple[StateChange, Claim]], claims: Claims) -> None:
    """Tell each claim what its RECEIVED write found. Two deliveries of one id in the
    same batch: the first one's write applied, the others find it received. A row that
    holds this very change is the claim's own earlier commit (:func:`is_own`)."""
    first: set[str] = set()
    for change, claim in batch:
        seen = claims.found.get(change.task_id)
        if seen is not None and is_own(seen, change):
            seen = None
        elif seen is None and change.task_id in first:
            seen = Seen(RECEIVED, change.retries)
        first.add(change.task_id)
        claim.settle(seen)


def is_own(seen: Seen, change: StateChange) -> bool:
    """Whether the row found is the one ``change`` itself wrote. A commit whose answer
    was lost (the database crashed or the connection broke after the server committed)
    is written again once the store is back; the row then holds the claim's own
    RECEIVED, which must not be taken for another delivery's, or the task would be
    acknowledged and never run. Each delivery's change carries its own arrival time to
    the microsecond and its worker, so no other delivery's row matches."""
    return (seen.state == RECEIVED and seen.retries == change.retries
            and seen.worker == change.worker and change.received_at is not None
            and seen.received_at == change.received_at)
