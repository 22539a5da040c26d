"""Write clients' PENDING rows in the background, in batches.

A PENDING row only tells DBAs that work is queued (an id with no row reads as
PENDING anyway), so ``submit()`` must not wait for it: a synchronous insert per
submit measured 2-3 ms on PostgreSQL (a commit each) and cut one thread's submit
rate from about 1,200/s to 360/s. Rows are queued here and committed by one
thread, many per transaction, a few milliseconds later; ``flush()`` (called by
``Client.close()`` and at interpreter exit) waits for them. Worker rows always
win over a late PENDING row (see the precedence rule in docs/dba.md).
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from collections.abc import Sequence

from ..errors import BackendError
from ..logs import get_logger
from ..results.records import StateChange
from ..results.store import ResultStore

log = get_logger("hutch.client")

ATTEMPTS = 5
BATCH_MAX = 1000
LINGER = 0.05
"""Seconds a batch waits for more rows (a flush does not wait): the worker's claim on a
task usually commits first, so the two writes do not queue on the same row lock in a
short round trip (docs/performance.md), and a loop of submits writes fewer batches."""


class PendingWriter:
    def __init__(self, store: ResultStore) -> None:
        self._store = store
        self.linger = LINGER
        self._queue: queue.SimpleQueue[StateChange | threading.Event] = queue.SimpleQueue()
        self._hurry = threading.Event()
        """Set by :meth:`flush`: a lingering batch is written at once."""
        self._thread = threading.Thread(target=self._run, name="hutch-pending-rows", daemon=True)
        self._thread.start()
        atexit.register(_flush_at_exit, weakref.ref(self))

    def add(self, rows: Sequence[StateChange]) -> None:
        for row in rows:
            self._queue.put(row)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every row added so far is written (or given up on)."""
        done = threading.Event()
        self._queue.put(done)
        self._hurry.set()
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            # Linger asleep rather than waiting on the queue: rows added meanwhile do not
            # wake this thread one by one (a loop of submits added a wake-up to each).
            if not isinstance(first, threading.Event):
                self._hurry.wait(self.linger)
            # Cleared whenever a batch is taken, so a flush made while this thread was
            # idle does not cut the next batch's linger short.
            self._hurry.clear()
            rows, markers = _drain(first, self._queue)
            for batch in range(0, len(rows), BATCH_MAX):
                self._write(rows[batch:batch + BATCH_MAX])
            for marker in markers:
                marker.set()

    def _write(self, rows: list[StateChange]) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self._store.write(rows)
                return
            except BackendError as exc:
                if attempt == ATTEMPTS:
                    log.warning("could not record PENDING rows; the tasks are queued regardless",
                                error=str(exc), count=len(rows))
                    return
                time.sleep(0.1 * attempt)


def _drain(first: StateChange | threading.Event,
           waiting: queue.SimpleQueue[StateChange | threading.Event],
           ) -> tuple[list[StateChange], list[threading.Event]]:
    """``first`` and everything queued behind it: the rows, and the flush markers to set
    once they are written."""
    rows: list[StateChange] = []
    markers: list[threading.Event] = []
    item: StateChange | threading.Event | None = first
    while item is not None:
        if isinstance(item, threading.Event):
            markers.append(item)
        else:
            rows.append(item)
        try:
            item = waiting.get_nowait()
        except queue.Empty:
            item = None
    return rows, markers


def _flush_at_exit(ref: weakref.ref[PendingWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer.flush(5.0)
