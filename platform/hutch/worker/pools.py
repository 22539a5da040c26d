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
from typing import TYPE_CHECKING

from ..errors import BackendError, BrokerError, UnstorableValue
from ..logs import get_logger
from .executor import Executor

if TYPE_CHECKING:
    from ..brokers.base import Delivery

log = get_logger("hutch.worker")


class ThreadPool:
    """``size`` threads taking deliveries from one local queue.

    With ``in_caller`` there are no threads: the caller (a solo worker's main
    thread, where signals can interrupt a task for its soft time limit) runs
    :meth:`run_here` until :meth:`close`. ``after`` is called with each delivery once
    it is handled (a prefork child counts its tasks with it: worker/recycling.py).
    """

    def __init__(self, executor: Executor, size: int, in_caller: bool = False,
                 after: Callable[[Delivery], None] | None = None) -> None:
        self.executor = executor
        self.after = after
        self.size = size
        self.in_caller = in_caller
        self._queue: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        self._threads = [] if in_caller else [
            threading.Thread(target=self._work, name=f"hutch-pool-{i}", daemon=True)
            for i in range(size)]
        self._closing = threading.Event()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, delivery: Delivery) -> None:
        self._queue.put(delivery)

    def run_here(self) -> None:
        """Work in the calling thread until :meth:`close` (``in_caller`` pools)."""
        self._work()

    def close(self) -> None:
        """Stop taking work: queued deliveries are requeued, running ones finish.
        Safe from a signal handler (SimpleQueue.put is reentrant)."""
        if self._closing.is_set():
            return
        self._closing.set()
        for _ in range(len(self._threads) or 1):
            self._queue.put(None)

    def _next(self) -> Delivery | None:
        # A timed wait, so signal handlers (warm shutdown, time limits) run promptly
        # in the main thread even while it waits here.
        while True:
            try:
                return self._queue.get(timeout=0.5)
            except queue.Empty:
                continue

    def _work(self) -> None:
        while (delivery := self._next()) is not None:
            if self._closing.is_set():
                delivery.reject(requeue=True)
                continue
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
        for thread in self._threads:
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
