"""One worker process: a consumer, a pool and a recorder, with warm and cold shutdown.

Used directly for the ``threads``, ``asyncio`` and ``solo`` pools, and as each
child of the ``prefork`` pool (where every child is a solo worker with its own
connection, so no task ever crosses a process boundary on the hot path). What the
stop signals mean to each is in worker/signals.py; SIGUSR1 and SIGHUP in
hutch.diagnostics. A worker of its own tells systemd when it is ready and stopping,
and pings its watchdog while its consumer is alive (worker/liveness.py); a prefork
child tells its supervisor instead.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import systemd
from ..brokers.factory import open_broker
from ..config import parse_autoscale
from ..diagnostics import Reloader, install
from ..events import TaskEvents
from ..logs import get_logger
from ..results.owners import label_connections
from ..results.store import open_store
from ..results.workers import ONLINE, STOPPING
from ..signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from ..stopping import stop_from_signal
from .chords import ChordKeeper
from .counters import Counters, TallyRow
from .executor import Executor
from .health import Outage, retrying
from .heartbeat import Heartbeat, Layout
from .liveness import STAMP_EVERY, Pulses, keep_beating
from .node import Node
from .pools import AsyncioPool, ThreadPool, make_pool
from .recorder import Recorder
from .recycling import RETIRED, Recycler, child_prefetch
from .remote import Remote
from .revocations import Revocations
from .signals import GROUP_SIGNALS, GROW_SIGNAL, SHRINK_SIGNAL, WARM_STOP, release_held
from .steering import ChildOrders, OwnOrders, Steering
from .threadscale import ThreadScaler
from .timelimits import MainThreadLimits, Slot, Unenforced

if TYPE_CHECKING:
    from ..brokers.base import Broker, ConsumerHandle, Delivery
    from ..results.store import ResultStore
    from .wiring import Wiring

log = get_logger("hutch.worker")


def default_nodename() -> str:
    return f"hutch@{socket.gethostname()}"


@dataclass(frozen=True)
class PreforkChild:
    """A prefork child's place: child ``index`` of the supervisor's pool, the
    shared-memory slot where it publishes its running task's hard time limit, where
    it posts worker-wide commands and reads the pool's size (worker/steering.py), the
    pulses where it shows it is alive and consuming (worker/liveness.py), and its row
    of the supervisor's outcome counts (for the heartbeat)."""

    index: int
    steering: Steering
    slot: Slot
    pulses: Pulses | None = None
    counts: TallyRow | None = None
    adjusted: tuple[tuple[str, dict[str, Any]], ...] = ()
    """The adjustments (rate_limit, add_consumer ...) the worker's children made
    before this one was forked: it makes them again before it consumes."""

    @property
    def of(self) -> int:
        """How many children the pool has now (pool_grow/pool_shrink change it)."""
        return self.steering.size()


class WorkerProcess:
    """Consume ``queues`` and run their tasks until asked to stop."""

    def __init__(self, wiring: Wiring, queues: Sequence[str] | None = None,
                 pool: str = "threads", concurrency: int | None = None,
                 nodename: str | None = None, child: PreforkChild | None = None,
                 reloader: Reloader | None = None,
                 autoscale: tuple[int, int] | None = None) -> None:
        """``child`` is given to prefork children (each a solo worker): such a process
        is replaceable, obeys its supervisor's signals only, waits for a result store
        that went away instead of failing, and takes 1/N of every rate limit.
        ``reloader``: what SIGHUP applies (a prefork child gets its supervisor's).
        ``autoscale``: (max, min) threads, following the load, starting with min (threads
        pool only: worker/threadscale.py); by default ``worker_autoscale``'s."""
        self.wiring = wiring
        self.child = child
        self.slot = child.slot if child is not None else None
        self.queues = list(queues or [wiring.conf.task_default_queue])
        self.pool_kind = pool
        self.concurrency = concurrency or wiring.conf.worker_concurrency
        self.nodename = nodename or default_nodename()
        self.name = f"{self.nodename}:{os.getpid()}"
        label_connections(self.name)  # so another worker can tell this process is alive
        self._stop = threading.Event()
        self._cold = threading.Event()
        self._signals = 0
        self._started = threading.Event()
        self._pool: ThreadPool | AsyncioPool | None = None
        self._executor: Executor | None = None
        self.reloader = reloader
        self._consumer: ConsumerHandle | None = None
        self._heartbeat_writer: Heartbeat | None = None
        self._owned = False  # run() owns the process: signals, systemd, liveness
        self._ended = threading.Event()
        self._recycler = Recycler.from_settings(wiring.conf) if child is not None else None
        self._retired = False
        self._stop_signal: str | None = None  # the OS signal that stopped it, by name
        if autoscale is None and wiring.conf.worker_autoscale and pool == "threads" \
                and child is None:
            autoscale = parse_autoscale(wiring.conf.worker_autoscale)
        self.autoscale = autoscale
        if autoscale is not None:
            self.concurrency = autoscale[1]  # as Celery: start with MIN threads
        self._scaler: ThreadScaler | None = None
        self._remote: Remote | None = None

    @property
    def prefetch(self) -> int:
        if self.child is not None:
            return child_prefetch(self.wiring.conf)
        slots = 1 if self.pool_kind == "solo" else self.concurrency
        return slots * self.wiring.conf.worker_prefetch_multiplier

    def run(self, install_signals: bool = True) -> int:
        """Block until stopped; returns the process exit code."""
        in_main = install_signals and threading.current_thread() is threading.main_thread()
        if install_signals:
            self._install_signals()
        self._owned = in_main
        if self.child is None:
            worker_init.send(self)
        if self.child is not None or self.pool_kind == "solo":  # as Celery's solo pool
            worker_process_init.send(None)
        try:
            code = self._run(in_main, install_signals)
        finally:
            self._ended.set()
        if self.child is None:
            worker_shutdown.send(self)
        else:
            worker_process_shutdown.send(None, pid=os.getpid(), exitcode=code)
        return code

    def _run(self, in_main: bool, install_signals: bool) -> int:
        self._watch_liveness()
        conf, tasks = self.wiring.conf, self.wiring.tasks
        # No pause before the store's one reconnect: the recorder retries on its own, and
        # must learn at once that the database is gone (no new task starts until it is back).
        store = open_store(conf, reconnect_pause=0.0)
        if not self._store_answers(store):
            store.close()
            return 0  # stopped before it could start
        broker = open_broker(conf)
        broker.declare(self.queues)
        recorder = Recorder(store, broker, conf.result_batch_max,
                            chords=ChordKeeper(conf, tasks, shard=self.name),
                            counters=Counters(self.child.counts if self.child else None),
                            durable_claims=conf.worker_claim_synchronous_commit)
        revoked = Revocations(store, conf.worker_state_db, conf.revoke_retention,
                              on_terminate=lambda *a: executor.terminate(*a),
                              on_request=lambda body: remote.handle(body),
                              running=lambda: [j.message for j in list(executor.running.values())])
        in_caller = in_main and self.pool_kind == "solo"
        executor = self._executor = Executor(
            conf, tasks, recorder, self.name, app_name=self.wiring.app_name, revoked=revoked,
            guard=MainThreadLimits(self.slot) if in_caller else Unenforced(self.pool_kind),
            replaceable=self.child is not None,
            events=TaskEvents.for_worker(broker, self.name, conf.worker_send_task_events))
        pool = self._pool = make_pool(self.pool_kind, executor, self.concurrency, in_caller,
                                      after=self._task_done if self._recycler else None)
        scaler = self._scaler = self._make_scaler(pool)
        remote = self._remote = Remote(Node(
            self.nodename, self.layout()["pool"], self.layout()["concurrency"],
            self.child.index if self.child else None, self.prefetch, conf.broker_url, executor,
            recorder.counters, tuple(self.queues), orders=self._orders()), broker)
        if self._stop.is_set():  # a stop that came during the setup found no pool to close
            self._begin_stop()
        revoked.start(broker)  # before consuming: the first delivery is checked already
        executor.rate_limits.attach(pool.submit,
                                    self.child.steering.size if self.child else lambda: 1)

        def on_delivery(delivery: Delivery) -> None:
            pool.submit(executor.received(delivery, pool.idle()))

        recorder.start()
        pool.start()
        prefetch = self.prefetch
        consumer = self._consumer = broker.consume(self.queues, prefetch, on_delivery)
        if self.prefetch != prefetch:  # resized meanwhile (pool_grow came first)
            consumer.set_prefetch(self.prefetch)
        consumer.start()
        remote.node.consumer = consumer  # hutch control add_consumer/cancel_consumer
        if self.child is not None:
            remote.replay(self.child.adjusted)
        log.info("worker ready", worker=self.name, queues=self.queues, **self.layout(),
                 prefetch=self.prefetch)
        self._started.set()
        if self.child is None:
            worker_ready.send(self)
        self._tell_consuming()
        heartbeat = self._heartbeat_writer = self._heartbeat(store, recorder.counters)
        if scaler is not None:
            scaler.start()
        if in_caller:
            assert isinstance(pool, ThreadPool)
            pool.run_here()  # until stop() closes it
        self._stop.wait()
        if scaler is not None:
            scaler.stop()  # the pool keeps its size while the worker winds down
        if self.child is None:
            worker_shutting_down.send(self.nodename, sig=self._stop_signal,
                                      how="Cold" if self._cold.is_set() else "Warm",
                                      exitcode=1 if self._cold.is_set() else 0)
        self._tell_stopping(self._cold.is_set())
        if self._cold.is_set():
            if install_signals:
                self._exit_cold()
            if heartbeat is not None:
                heartbeat.stop()
            return self._abandon(consumer, broker, store)
        log.info("warm shutdown: finishing running tasks", worker=self.name)
        consumer.cancel()
        pool.shutdown()
        recorder.stop()
        executor.events.close()
        revoked.close()
        consumer.stop()
        broker.close()
        if heartbeat is not None:
            heartbeat.stop()  # offline: a clean exit
        store.close()
        log.info("worker stopped", worker=self.name)
        return RETIRED if self._retired else 0

    def _task_done(self, delivery: Delivery) -> None:
        """After each delivery a prefork child handled: retire once it ran its share of
        tasks or holds too much memory (worker/recycling.py). A delivery a rate limit
        holds back has not run yet: it comes back through the pool."""
        assert self._recycler is not None and self._executor is not None
        if self._retired or id(delivery.wire) in self._executor.rate_limits.held:
            return
        reason = self._recycler.task_done()
        if reason is None:
            return
        log.info("worker child retiring: the supervisor starts a fresh one", worker=self.name,
                 reason=reason)
        self._retired = True
        self._begin_stop()

    def _abandon(self, consumer: ConsumerHandle, broker: Broker, store: ResultStore) -> int:
        """A cold stop of an embedded worker: drop the connection (RabbitMQ redelivers
        every unacknowledged message) without exiting the host process."""
        log.warning("cold stop: running tasks are abandoned and return to the queue",
                    worker=self.name)
        consumer.stop()
        broker.close()
        store.close()
        return 1

    # -- systemd and the supervisor: worker/liveness.py ---------------------------------
    def _watch_liveness(self) -> None:
        """Beat while the consumer is alive (or not made yet, or stopping): a prefork
        child into its pulse, a worker of its own to systemd's watchdog."""
        if not self._owned:
            return
        alive = lambda: (self._consumer is None or self._consumer.is_alive()  # noqa: E731
                         or self._stop.is_set())
        pulses = self.child.pulses if self.child is not None else None
        if self.child is not None and pulses is not None:
            index = self.child.index
            keep_beating(alive, lambda: pulses.stamp(index), self._ended)
            return
        watchdog = systemd.Watchdog()
        if watchdog.every is not None:
            keep_beating(alive, watchdog.alive, self._ended, min(STAMP_EVERY, watchdog.every))

    def _tell_consuming(self) -> None:
        if not self._owned:
            return
        if self.child is not None:
            if self.child.pulses is not None:
                self.child.pulses.consuming(self.child.index)
            return
        systemd.ready(f"consuming {','.join(self.queues)}; {self.pool_kind} pool, "
                      f"concurrency {self.concurrency}")

    def _tell_stopping(self, cold: bool) -> None:
        if self._owned and self.child is None:
            systemd.stopping("cold shutdown" if cold else
                             "warm shutdown: finishing running tasks")

    def _orders(self) -> ChildOrders | OwnOrders:
        """Where this process's worker-wide control commands go (worker/steering.py)."""
        if self.child is not None:
            return ChildOrders(self.child.steering, self.child.index)
        return OwnOrders(self.pool_kind, self.concurrency, lambda: stop_from_signal(self.stop),
                         lambda: self._heartbeat_writer and self._heartbeat_writer.write(ONLINE),
                         self._queues_now, self.queues, scaler=self._scaler)

    def _make_scaler(self, pool: ThreadPool | AsyncioPool) -> ThreadScaler | None:
        """A threads worker's pool grows and shrinks (worker/threadscale.py); the others
        keep their size."""
        if self.child is not None or self.pool_kind != "threads" \
                or not isinstance(pool, ThreadPool):
            return None
        return ThreadScaler(pool, self._resized, self.autoscale,
                            self.wiring.conf.worker_autoscale_keepalive)

    def _resized(self, size: int, why: str) -> None:
        """The threads pool has ``size`` threads now: the consumer prefetches for them,
        and ``inspect stats``, ``report`` and the heartbeat row say so."""
        self.concurrency = size
        if self._consumer is not None:
            self._consumer.set_prefetch(self.prefetch)
        if self._remote is not None:
            self._remote.node.prefetch = self.prefetch
        if self._heartbeat_writer is not None:
            self._heartbeat_writer.update(concurrency=size, prefetch=self.prefetch)
        log.info("pool resized", worker=self.name, threads=size, by=why,
                 prefetch=self.prefetch)

    def _queues_now(self, queues: list[str]) -> None:
        if self._heartbeat_writer is not None:
            self._heartbeat_writer.update(queues=list(queues))

    def _heartbeat(self, store: ResultStore, counters: Counters) -> Heartbeat | None:
        """This worker's ``hutch_workers`` row, kept by a thread (worker/heartbeat.py);
        none in a prefork child, whose supervisor keeps the row."""
        if self.child is not None:
            return None
        layout = Layout(self.nodename, self.pool_kind, self.concurrency, self.queues,
                        self.prefetch, self.wiring.app_name)
        return Heartbeat(store, layout, self.wiring.conf.worker_heartbeat_interval,
                         state=lambda: STOPPING if self._stop.is_set() else ONLINE,
                         counts=counters.snapshot).start()

    def layout(self) -> dict[str, Any]:
        """The pool and concurrency the operator chose, for log lines: a prefork child
        runs one task at a time, but says it is child ``child`` of a prefork worker of
        concurrency N."""
        if self.child is None:
            return {"pool": self.pool_kind, "concurrency": self.concurrency}
        return {"pool": "prefork", "concurrency": self.child.of, "child": self.child.index}

    def _store_answers(self, store: ResultStore) -> bool:
        """Whether the result store answers, once this process may start (False: it was
        stopped first). A worker of its own fails at once on an unreachable or
        un-migrated database (the CLI says so and exits 2); a prefork child, whose
        supervisor checked the store before forking, waits for it, as a running worker
        does, so an outage does not turn into children dying and being replaced."""
        if self.child is None:
            store.ping()
            return True
        outage = Outage("result store unreachable: this worker process waits for it "
                        "before consuming", "result store answers again: consuming")
        retrying("reach the result store",
                 lambda: None if self._stop.is_set() else store.ping(), outage,
                 pause=self._stop.wait)
        return not self._stop.is_set()

    def wait_started(self, timeout: float | None = None) -> bool:
        return self._started.wait(timeout)

    def stop(self, cold: bool = False) -> None:
        """Warm stop (finish running tasks); a second stop, or ``cold``, stops at once: the
        process exits when the worker owns it (signals installed), else the worker
        drops its connection and returns, leaving running tasks to be redelivered."""
        if cold or self._stop.is_set():
            self._cold.set()
        self._begin_stop()

    def _begin_stop(self) -> None:
        """A warm stop: no new task starts (the executor holds them back, an in-caller
        pool returns), and run() winds the worker down."""
        self._stop.set()
        if self._executor is not None:
            self._executor.closing.set()
        if isinstance(self._pool, ThreadPool) and self._pool.in_caller:
            self._pool.close()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGQUIT, lambda *_: self._exit_cold())
        reloader = self.reloader = self.reloader or Reloader(self.wiring.conf)
        if self.child is None:
            for sig in GROUP_SIGNALS:
                signal.signal(sig, self._on_terminate)
            for sig in (WARM_STOP, GROW_SIGNAL, SHRINK_SIGNAL):  # a prefork pool's words only
                signal.signal(sig, signal.SIG_IGN)
            install(reloader)
            return
        for sig in GROUP_SIGNALS:
            signal.signal(sig, self._on_group_signal)
        signal.signal(WARM_STOP, self._on_warm_stop)
        install(reloader, before=self._exit_if_terminating)
        release_held()

    def _on_terminate(self, signum: int = 0, *_: object) -> None:
        """First SIGTERM/SIGINT: warm. A second one arrives while the warm shutdown
        waits for running tasks, so it must exit from here. The warm stop itself runs
        in a thread (hutch.stopping)."""
        self._signals += 1
        self._stop_signal = self._stop_signal or signal.Signals(signum).name
        if self._signals > 1 or self._stop.is_set():
            self._exit_cold()
        stop_from_signal(self.stop)

    def _on_group_signal(self, *_: object) -> None:
        """A prefork child's SIGTERM/SIGINT: the whole group got it, the supervisor too,
        and it relays the stop (WARM_STOP), so it is ignored here; unless this child
        sent it to itself to terminate its task."""
        self._exit_if_terminating()

    def _on_warm_stop(self, *_: object) -> None:
        """The supervisor's warm stop (never cold, however often it comes: the
        supervisor's cold stop is SIGKILL)."""
        self._exit_if_terminating()
        stop_from_signal(self._begin_stop)

    def _exit_if_terminating(self) -> None:
        """A prefork child that signalled itself to terminate its task (revoke
        terminate=True, any signal) exits at once; the supervisor starts another."""
        if self._executor is not None and self._executor.terminating:
            os._exit(1)

    def _exit_cold(self) -> None:
        self._tell_stopping(cold=True)
        log.warning("cold shutdown: unfinished tasks return to the queue", worker=self.name)
        os._exit(1)
