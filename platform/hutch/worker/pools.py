"""Execution pools inside one worker process: threads (solo is one thread) and asyncio.

The consumer thread only hands deliveries over; a pool runs them. On a warm
shutdown the deliveries a pool has not started are given back so RabbitMQ can
send them to another worker at once.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BackendError, BrokerError, UnstorableValue
from ..logs import get_logger
from .executor import Executor

if TYPE_CHECKING:
    from ..brokers.base import Delivery

log = get_logger("hutch.worker")


@dataclass(eq=False)
class _Worker:
    """One thread of a :class:`ThreadPool`: whether it runs a delivery now, and whether
    it was told to retire (it finishes that delivery first)."""

    thread: threading.Thread
    busy: bool = False
    retiring: bool = False


class ThreadPool:
    """``size`` threads taking deliveries from one local queue.

    With ``in_caller`` there are no threads: the caller (a solo worker's main
    thread, where signals can interrupt a task for its soft time limit) runs
    :meth:`run_here` until :meth:`close`. ``after`` is called with each delivery once
    it is handled (a prefork child counts its tasks with it: worker/recycling.py).

    The threads can be added and retired while it runs (:meth:`grow`, :meth:`shrink`:
    ``pool_grow``/``pool_shrink`` and ``--autoscale``, worker/threadscale.py). A
    retiring thread finishes its delivery and takes no other; deliveries waiting in
    the local queue stay there for the threads that remain.
    """

    def __init__(self, executor: Executor, size: int, in_caller: bool = False,
                 after: Callable[[Delivery], None] | None = None) -> None:
        self.executor = executor
        self.after = after
        self.in_caller = in_caller
        self._queue: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # _workers
        self._workers: dict[int, _Worker] = {}
        self._started = False
        self._closing = threading.Event()
        self._waiting = 0  # threads waiting for a delivery
        self._waiting_lock = threading.Lock()
        if not in_caller:
            self._add(size)

    @property
    def size(self) -> int:
        """Threads taking work now (retiring ones not counted)."""
        if self.in_caller:
            return 1
        with self._lock:
            return sum(not w.retiring for w in self._workers.values())

    def start(self) -> None:
        with self._lock:
            self._started = True
            workers = list(self._workers.values())
        for worker in workers:
            worker.thread.start()

    def submit(self, delivery: Delivery) -> None:
        self._queue.put(delivery)

    def idle(self) -> bool:
        """A thread waits for work and no delivery is queued: one handed over now starts
        at once (its claim is then written by that thread: Executor.received). A hint:
        a thread may take or finish work meanwhile."""
        return self._waiting > 0 and self._queue.empty()

    def busy(self) -> dict[int, bool]:
        """Each working (not retiring) thread's slot, and whether it runs a delivery."""
        with self._lock:
            return {slot: w.busy for slot, w in self._workers.items() if not w.retiring}

    def grow(self, count: int) -> int:
        """Add ``count`` threads (none once closing); the size now."""
        if not self._closing.is_set() and not self.in_caller:
            self._add(count)
        return self.size

    def shrink(self, count: int, slots: list[int] | None = None) -> int:
        """Retire ``count`` threads (``slots``, else the idlest), one always stays; each
        finishes its delivery first. The size now."""
        with self._lock:
            working = {s: w for s, w in self._workers.items() if not w.retiring}
            ranked = slots if slots is not None else sorted(
                working, key=lambda s: (working[s].busy, -s))
            for slot in [s for s in ranked if s in working][:max(0, len(working) - 1)][:count]:
                working[slot].retiring = True
        return self.size

    def _add(self, count: int) -> None:
        with self._lock:
            for _ in range(count):
                slot = min(set(range(len(self._workers) + 1)) - set(self._workers))
                worker = _Worker(threading.Thread(target=self._work, args=(slot,),
                                                  name=f"hutch-pool-{slot}", daemon=True))
                self._workers[slot] = worker
                if self._started:
                    worker.thread.start()

    def run_here(self) -> None:
        """Work in the calling thread until :meth:`close` (``in_caller`` pools)."""
        self._work(None)

    def close(self) -> None:
        """Stop taking work: queued deliveries are requeued, running ones finish.
        Safe from a signal handler (SimpleQueue.put is reentrant)."""
        if self._closing.is_set():
            return
        self._closing.set()
        # One end marker per thread, retiring ones too (a thread that retires on its
        # own leaves its marker behind, harmlessly); no lock: a signal handler may call it.
        for _ in range(len(self._workers) or 1):
            self._queue.put(None)

    def _next(self, worker: _Worker | None) -> Delivery | None:
        with self._waiting_lock:
            self._waiting += 1
        try:
            return self._take(worker)
        finally:
            with self._waiting_lock:
                self._waiting -= 1

    def _take(self, worker: _Worker | None) -> Delivery | None:
        # A timed wait, so signal handlers (warm shutdown, time limits) run promptly
        # in the main thread even while it waits here, and a retiring thread leaves.
        while worker is None or not worker.retiring:
            try:
                delivery = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if worker is not None and worker.retiring and delivery is not None:
                self._queue.put(delivery)  # told to retire while it waited: for the others
                return None
            return delivery
        return None

    def _work(self, slot: int | None) -> None:
        worker = self._workers.get(slot) if slot is not None else None
        try:
            while (delivery := self._next(worker)) is not None:
                if worker is not None:
                    worker.busy = True
                self._handle(delivery)
                if worker is not None:
                    worker.busy = False
        finally:
            if slot is not None:
                with self._lock:
                    self._workers.pop(slot, None)

    def _handle(self, delivery: Delivery) -> None:
        if self._closing.is_set():
            delivery.reject(requeue=True)
            return
        try:
            self.executor.handle(delivery)
        except Exception as exc:  # noqa: BLE001 - last line of defence; see below
            if transient(exc):
                log_requeue(exc)
                time.sleep(REQUEUE_PAUSE)
                delivery.reject(requeue=True)
            else:
                last_resort(self.executor, delivery, exc)
        if self.after is not None:
            self.after(delivery)

    def shutdown(self, timeout: float | None = None) -> None:
        """Requeue what has not started, let running tasks finish."""
        self.close()
        with self._lock:
            threads = [w.thread for w in self._workers.values()]
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout)


class AsyncioPool:
    """One event loop running up to ``size`` tasks at once (for ``async def`` tasks)."""

    def __init__(self, executor: Executor, size: int) -> None:
        self.executor = executor
        self.size = size
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hutch-asyncio",
                                        daemon=True)
        self._closing = False
        self._running: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._make_slots(), self._loop).result()

    async def _make_slots(self) -> None:
        self._slots = asyncio.Semaphore(self.size)

    def submit(self, delivery: Delivery) -> None:
        self._loop.call_soon_threadsafe(self._spawn, delivery)

    def idle(self) -> bool:
        """Never: claims go to the claim writer (a coroutine must not block the loop
        on a database write)."""
        return False

    def _spawn(self, delivery: Delivery) -> None:
        task = self._loop.create_task(self._run(delivery))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, delivery: Delivery) -> None:
        assert self._slots is not None
        async with self._slots:
            if self._closing:
                delivery.reject(requeue=True)
                return
            try:
                await self.executor.handle_async(delivery)
            except Exception as exc:  # noqa: BLE001 - last line of defence; see below
                if transient(exc):
                    log_requeue(exc)
                    await asyncio.sleep(REQUEUE_PAUSE)
                    delivery.reject(requeue=True)
                else:
                    last_resort(self.executor, delivery, exc)

    def shutdown(self, timeout: float | None = None) -> None:
        async def drain() -> None:
            self._closing = True
            if self._running:
                await asyncio.wait(set(self._running), timeout=timeout)
        asyncio.run_coroutine_threadsafe(drain(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# -- the last line of defence --------------------------------------------------------
# The executor settles every delivery itself; an exception reaching a pool is either an
# outage of the database or the broker met on the way (not the message's fault: the
# delivery goes back, after a pause so an outage costs a line a second, not a hot loop),
# or anything else: a bug, or a message the checks let through. That delivery would fail
# the same way each time, so it is dead-lettered with the error as its reason, never
# requeued (a requeue loop once logged thousands of tracebacks a second).

REQUEUE_PAUSE = 1.0
"""Seconds before a delivery that met a database or broker outage is requeued."""


def transient(exc: BaseException) -> bool:
    """An outage worth trying again; a value the database refuses is not one."""
    return isinstance(exc, (BackendError, BrokerError)) and not isinstance(exc, UnstorableValue)


def log_requeue(exc: BaseException) -> None:
    log.warning("database or broker failed while handling a delivery; requeueing it",
                error=f"{type(exc).__name__}: {exc}", retry_in=REQUEUE_PAUSE)


def last_resort(executor: Executor, delivery: Delivery, exc: Exception) -> None:
    try:
        executor.refuse_unexpected(delivery, exc)
    except Exception as again:  # noqa: BLE001 - nothing else is left to try
        log.error("could not dead-letter the delivery; rejecting it into the dead-letter "
                  "queue", error=f"{type(again).__name__}: {again}")
        delivery.reject(requeue=False)


def make_pool(kind: str, executor: Executor, concurrency: int, in_caller: bool = False,
              after: Callable[[Delivery], None] | None = None) -> ThreadPool | AsyncioPool:
    if kind == "asyncio":
        return AsyncioPool(executor, concurrency)
    return ThreadPool(executor, 1 if kind == "solo" else concurrency, in_caller=in_caller,
                      after=after)
