"""One worker process: a consumer, a pool and a recorder, with warm and cold shutdown.

Used directly for the ``threads``, ``asyncio`` and ``solo`` pools, and as each
child of the ``prefork`` pool (where every child is a solo worker with its own
connection, so no task ever crosses a process boundary on the hot path).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from ..connections import open_broker, open_store
from ..stopping import stop_from_signal
from .executor import Executor
from .pools import AsyncioPool, ThreadPool, make_pool
from .recorder import Recorder
from .revocations import Revocations
from .timelimits import MainThreadLimits, Slot, Unenforced

if TYPE_CHECKING:
    from ..app import Hutch
    from ..brokers.base import Broker, ConsumerHandle, Delivery
    from ..results.store import ResultStore

log = structlog.get_logger("hutch.worker")


def default_nodename() -> str:
    return f"hutch@{socket.gethostname()}"


class WorkerProcess:
    """Consume ``queues`` and run their tasks until asked to stop."""

    def __init__(self, app: Hutch, queues: Sequence[str] | None = None, pool: str = "threads",
                 concurrency: int | None = None, nodename: str | None = None,
                 slot: Slot | None = None, rate_split: int = 1) -> None:
        """``slot`` is given to prefork children: it publishes the running task's hard
        time limit to the supervisor, and marks the process as replaceable;
        ``rate_split`` divides each task's rate limit between the children."""
        self.app = app
        self.slot = slot
        self.queues = list(queues or [app.conf.task_default_queue])
        self.pool_kind = pool
        self.concurrency = concurrency or app.conf.worker_concurrency
        self.name = f"{nodename or default_nodename()}:{os.getpid()}"
        self.rate_split = rate_split  # prefork children each take 1/N of every rate limit
        self._stop = threading.Event()
        self._cold = threading.Event()
        self._signals = 0
        self._started = threading.Event()
        self._pool: ThreadPool | AsyncioPool | None = None
        self._executor: Executor | None = None

    @property
    def prefetch(self) -> int:
        slots = 1 if self.pool_kind == "solo" else self.concurrency
        return slots * self.app.conf.worker_prefetch_multiplier

    def run(self, install_signals: bool = True) -> int:
        """Block until stopped; returns the process exit code."""
        in_main = install_signals and threading.current_thread() is threading.main_thread()
        if install_signals:
            self._install_signals()
        conf = self.app.conf
        # No pause before the store's one reconnect: the recorder retries on its own, and
        # must learn at once that the database is gone (no new task starts until it is back).
        store, broker = open_store(conf, reconnect_pause=0.0), open_broker(conf)
        store.count()  # fail fast on an unreachable or un-migrated database
        broker.declare(self.queues)
        recorder = Recorder(store, broker, conf.result_batch_max)
        revoked = Revocations(store, conf.worker_state_db, conf.revoke_retention,
                              on_terminate=lambda *a: executor.terminate(*a))
        in_caller = in_main and self.pool_kind == "solo"
        executor = self._executor = Executor(
            self.app, recorder, self.name, revoked=revoked,
            guard=MainThreadLimits(self.slot) if in_caller else Unenforced(self.pool_kind),
            replaceable=self.slot is not None)
        pool = self._pool = make_pool(self.pool_kind, executor, self.concurrency, in_caller)
        revoked.start(broker)  # before consuming: the first delivery is checked already
        executor.rate_limits.attach(pool.submit, self.rate_split)

        def on_delivery(delivery: Delivery) -> None:
            pool.submit(executor.received(delivery))

        recorder.start()
        pool.start()
        consumer = broker.consume(self.queues, self.prefetch, on_delivery)
        consumer.start()
        log.info("worker ready", worker=self.name, queues=self.queues, pool=self.pool_kind,
                 concurrency=self.concurrency, prefetch=self.prefetch)
        self._started.set()
        if in_caller:
            assert isinstance(pool, ThreadPool)
            pool.run_here()  # until stop() closes it
        self._stop.wait()
        if self._cold.is_set():
            if install_signals:
                self._exit_cold()
            return self._abandon(consumer, broker, store)
        log.info("warm shutdown: finishing running tasks", worker=self.name)
        consumer.cancel()
        pool.shutdown()
        recorder.stop()
        revoked.close()
        consumer.stop()
        broker.close()
        store.close()
        log.info("worker stopped", worker=self.name)
        return 0

    def _abandon(self, consumer: ConsumerHandle, broker: Broker, store: ResultStore) -> int:
        """A cold stop of an embedded worker: drop the connection (RabbitMQ redelivers
        every unacknowledged message) without exiting the host process."""
        log.warning("cold stop: running tasks are abandoned and return to the queue",
                    worker=self.name)
        consumer.stop()
        broker.close()
        store.close()
        return 1

    def wait_started(self, timeout: float | None = None) -> bool:
        return self._started.wait(timeout)

    def stop(self, cold: bool = False) -> None:
        """Warm stop (finish running tasks); a second stop, or ``cold``, stops at once: the
        process exits when the worker owns it (signals installed), else the worker
        drops its connection and returns, leaving running tasks to be redelivered."""
        if cold or self._stop.is_set():
            self._cold.set()
        self._stop.set()
        if self._executor is not None:
            self._executor.closing.set()
        if isinstance(self._pool, ThreadPool) and self._pool.in_caller:
            self._pool.close()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_terminate)
        signal.signal(signal.SIGINT, self._on_terminate)
        signal.signal(signal.SIGQUIT, lambda *_: self._exit_cold())

    def _on_terminate(self, *_: object) -> None:
        """First SIGTERM/SIGINT: warm. A second one arrives while the warm shutdown
        waits for running tasks, so it must exit from here. A prefork child that
        signalled itself to terminate its task (revoke terminate=True) exits at once.
        The warm stop itself runs in a thread (hutch.stopping)."""
        self._signals += 1
        if self._executor is not None and self._executor.terminating:
            os._exit(1)
        if self._signals > 1 or self._stop.is_set():
            self._exit_cold()
        stop_from_signal(self.stop)

    def _exit_cold(self) -> None:
        log.warning("cold shutdown: unfinished tasks return to the queue", worker=self.name)
        os._exit(1)
