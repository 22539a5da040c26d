"""The prefork pool: a supervisor forking N single-slot worker processes.

Each child opens its own broker connection and result-store connection and
consumes on its own, so tasks run in parallel on every core with no pipe
between parent and child. The supervisor only starts, watches and replaces
children (worker/respawns.py: a child that dies young is replaced later and
later), and relays shutdown: a first SIGTERM or SIGINT is warm (children finish
their task), a second one or SIGQUIT is cold (children are killed; their
unacknowledged messages go back to RabbitMQ). Children ignore SIGTERM and SIGINT,
which a whole process group receives at once, and obey the supervisor only
(worker/signals.py says why and how).

Hard time limits are the supervisor's job too: each child publishes its running
task's deadline in a shared-memory :class:`~hutch.worker.timelimits.Slot`; past
it, the supervisor records FAILURE with ``TimeLimitExceeded``, kills the child
with SIGKILL and starts a new one (nothing inside the child could be trusted to
stop a task stuck in C code).

The pool's size can change while it runs: ``pool_grow``/``pool_shrink``, which
every child hears and posts to the supervisor (worker/steering.py), SIGTTIN and
SIGTTOU, and ``--autoscale`` (worker/autoscale.py). A new child gets a slot of
its own; a shrink stops the idlest children warm and does not replace them.

Under systemd (``Type=notify``) the supervisor is the process that speaks for the
worker: READY once every child consumes, STATUS when that changes, STOPPING at
shutdown, and WATCHDOG pings while every child shows it is alive
(worker/liveness.py). SIGUSR1 (stack dump) and SIGHUP (reload) act here and are
relayed to every child (hutch.diagnostics).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING

from .. import systemd
from ..brokers.base import NOTICE_EVERYONE, NOTICES, TASK_EVENTS, FanOutChannel
from ..brokers.factory import open_broker
from ..diagnostics import Reloader, install
from ..errors import BackendError, HutchError, TimeLimitExceeded
from ..events import TaskEvents
from ..logs import get_logger
from ..messages import encode_notice, event_repr
from ..results.records import FAILURE, StateChange
from ..results.store import ResultStore, open_store
from ..results.workers import ONLINE, STOPPING
from ..signals import worker_init, worker_ready, worker_shutdown, worker_shutting_down
from .autoscale import Autoscaler
from .counters import Counters, Tally
from .heartbeat import Heartbeat, Layout
from .liveness import MIN_STALE, Pulses
from .node import Order
from .process import PreforkChild, WorkerProcess, default_nodename
from .recycling import RETIRED, child_prefetch
from .respawns import Respawns
from .signals import GROW_SIGNAL, SHRINK_SIGNAL, WARM_STOP, as_sidecar_child, as_worker_child, held
from .steering import (
    ADJUSTMENTS,
    AUTOSCALE,
    GROW,
    HEARTBEAT,
    SHRINK,
    SHUTDOWN,
    Adjustments,
    Steering,
)
from .timelimits import Running, Slot

if TYPE_CHECKING:
    from .wiring import Wiring

log = get_logger("hutch.worker")

TICK = 0.1
"""Seconds between the supervisor's rounds (reap, respawn, steer, time limits)."""
STOPPING_TICK = 0.02
"""The same while stopping: the worker exits soon after its last child does."""
SIDECAR = "sidecar"
"""The sidecar's key next to the worker children's slot indexes (for its replacement)."""
OWN_ROW = -1
"""The supervisor's row of the tally: the time-limit failures it records itself."""


class PreforkSupervisor:
    def __init__(self, wiring: Wiring, queues: Sequence[str], concurrency: int,
                 nodename: str | None = None, sidecar: Callable[[], int] | None = None,
                 autoscale: tuple[int, int] | None = None) -> None:
        """``sidecar``: run in one more child of its own, restarted like the others and
        stopped with them (``worker -B``: the embedded beat). ``autoscale``: (max, min)
        children, following the load (worker/autoscale.py)."""
        self.wiring = wiring
        self.queues = list(queues)
        self.nodename = nodename
        self.wanted = set(range(concurrency))
        """The slots that should have a child now: pool_grow/pool_shrink and the
        autoscaler change them (a slot's child may be starting or being replaced)."""
        self.children: dict[int, int] = {}  # pid -> slot index
        self.slots: list[Slot] = []
        self.tally = Tally()
        """Outcome counts: a row per child slot and the supervisor's own; summed by the
        heartbeat."""
        self._counters = Counters(self.tally.row(OWN_ROW))
        self.steering = Steering(concurrency)
        self.adjustments = Adjustments(self.queues)
        """rate_limit, add_consumer ... as the children made them: a new child makes them
        again (worker/steering.py)."""
        self.autoscaler = (Autoscaler(*autoscale, wiring.conf.worker_autoscale_keepalive)
                           if autoscale else None)
        self._signalled = 0  # SIGTTIN (+1) and SIGTTOU (-1) not yet acted on
        self._heartbeat: Heartbeat | None = None
        self._born: dict[int, float] = {}  # pid -> when it was forked (monotonic)
        self._killed: set[int] = set()  # children this supervisor killed (time limits)
        self._respawns = Respawns()
        self._stopping = 0
        self._cold_stop = False
        self._store: ResultStore | None = None
        self.sidecar = sidecar
        self.sidecar_pid: int | None = None
        self.pulses = Pulses(concurrency)
        self.reloader = Reloader(wiring.conf)
        self._watchdog = systemd.Watchdog()
        self._told: str | None = None  # the last STATUS sent to systemd
        self._ready = False
        self._stale: list[int] = []

    def run(self) -> int:
        """Until every child has stopped; 0 after a warm shutdown, 1 after a cold one."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGQUIT, lambda *_: self._cold(signal.SIGQUIT))
        signal.signal(WARM_STOP, signal.SIG_IGN)  # a child's word: `systemctl kill` sends all
        signal.signal(GROW_SIGNAL, lambda *_: self._on_resize_signal(+1))
        signal.signal(SHRINK_SIGNAL, lambda *_: self._on_resize_signal(-1))
        install(self.reloader, relay=self._relay)
        worker_init.send(self)
        for slot in sorted(self.wanted):
            self._spawn(slot)
        self._spawn(SIDECAR)
        log.info("prefork supervisor ready", children=sorted(self.children),
                 queues=self.queues)
        self._heartbeat = self._start_heartbeat()
        while True:
            self._reap()
            self._tell_systemd()  # STOPPING goes out even when the children end at once
            if not (self.children or self.sidecar_pid
                    or (self._respawns.pending and not self._stopping)):
                break
            for due in self._respawns.due(time.monotonic()):
                if due == SIDECAR or (due in self.wanted  # not shrunk away, nor regrown
                                      and due not in self.children.values()):
                    self._spawn(due)
            self._steer()
            self._enforce_time_limits()
            time.sleep(STOPPING_TICK if self._stopping else TICK)
        log.info("all children stopped")
        if self._heartbeat is not None:
            self._heartbeat.stop()  # offline: a clean exit
        if self._store is not None:
            self._store.close()
        worker_shutdown.send(self)
        return 1 if self._cold_stop else 0

    def _spawn(self, slot: int | str) -> None:
        """Fork the child for ``slot`` (an index, or SIDECAR), unless a stop came."""
        with self._no_heartbeat_write(), held():
            if self._stopping:
                return
            if isinstance(slot, int):
                self._prepare(slot)
                pid = _fork("worker", as_worker_child, lambda: self._run_child(slot))
                self.children[pid] = slot
            elif self.sidecar is not None:
                pid = self.sidecar_pid = _fork("sidecar", as_sidecar_child, self.sidecar)
            else:
                return
            self._born[pid] = time.monotonic()
            if self._stopping:  # a stop handled between the check above and now
                self._send_stop(pid)

    def _start_heartbeat(self) -> Heartbeat:
        """The worker's ``hutch_workers`` row, written by this process for all its
        children (worker/heartbeat.py)."""
        conf = self.wiring.conf
        self._store = self._store or open_store(conf)
        layout = Layout(self.nodename or default_nodename(), "prefork", self.concurrency,
                        self.queues, self.prefetch, self.wiring.app_name)
        return Heartbeat(self._store, layout, conf.worker_heartbeat_interval,
                         state=lambda: STOPPING if self._stopping else ONLINE,
                         counts=self.tally.totals,
                         processes=lambda: list(self.children.copy())).start()

    def _no_heartbeat_write(self) -> AbstractContextManager[None]:
        """While forking: no child copies a lock the heartbeat thread holds mid-write."""
        return self._heartbeat.paused() if self._heartbeat is not None else nullcontext()

    @property
    def concurrency(self) -> int:
        """How many children the pool has now (some may be starting or replaced)."""
        return len(self.wanted)

    @property
    def prefetch(self) -> int:
        return self.concurrency * child_prefetch(self.wiring.conf)

    def _prepare(self, slot: int) -> None:
        """The shared memory of slot ``slot``, made before its child is forked (the pool
        grows: new slots), and marked as just born."""
        while len(self.slots) <= slot:
            self.slots.append(Slot())
        self.pulses.born(slot)
        self.tally.row(slot)
        self.steering.outbox(slot)

    def _run_child(self, slot: int) -> int:
        child = PreforkChild(index=slot, steering=self.steering, slot=self.slots[slot],
                             pulses=self.pulses, counts=self.tally.row(slot),
                             adjusted=tuple(self.adjustments.replay()))
        return WorkerProcess(self.wiring, self.queues, pool="solo", concurrency=1,
                             nodename=self.nodename, child=child, reloader=self.reloader).run()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.sidecar_pid:
                self.sidecar_pid = None
                self._replace(pid, SIDECAR, "sidecar child exited; replacing it", status)
            elif pid in self.children:
                self._replace(pid, self.children.pop(pid), "worker child exited; replacing it",
                              status)

    def _replace(self, pid: int, slot: int | str, message: str, status: int) -> None:
        now = time.monotonic()
        lived = now - self._born.pop(pid, now)
        expected = pid in self._killed
        self._killed.discard(pid)
        if self._stopping:
            return
        if slot != SIDECAR and slot not in self.wanted:
            log.info("worker child stopped: the pool shrank", pid=pid,
                     exit=os.waitstatus_to_exitcode(status))
            return
        if slot != SIDECAR and os.waitstatus_to_exitcode(status) == RETIRED:
            self._respawns.retired(slot, now)
            log.info("worker child retired; replacing it", pid=pid, lived=round(lived, 3))
            return
        pause = self._respawns.exited(slot, lived, now, expected=expected)
        log.warning(message, pid=pid, exit=os.waitstatus_to_exitcode(status),
                    lived=round(lived, 3), replaced_in=pause)

    # -- worker-wide commands and autoscaling: worker/steering.py, worker/autoscale.py --
    def _steer(self) -> None:
        """Carry out what the children posted (each request once), the grow/shrink
        signals, and the autoscaler's decision; nothing of it once stopping."""
        for order in self.steering.collect():
            self._obey(order)
        signalled, self._signalled = self._signalled, 0
        if self._stopping:
            return
        if signalled > 0:
            self._grow(signalled, "SIGTTIN")
        elif signalled < 0:
            self._shrink(-signalled, "SIGTTOU")
        if self.autoscaler is not None:
            self._autoscale(self.autoscaler)

    def _on_resize_signal(self, delta: int) -> None:
        """SIGTTIN grows the pool by one child, SIGTTOU shrinks it by one (Celery's
        signals); acted on in the loop, not in the handler (it forks)."""
        self._signalled += delta

    def _obey(self, order: Order) -> None:
        if order.command in ADJUSTMENTS:
            self._adjusted(order)
            return
        log.info("control command", command=order.command, ticket=order.ticket)
        if order.command == SHUTDOWN:
            if not self._stopping:
                self._on_stop()
        elif self._stopping:
            return
        elif order.command == GROW:
            self._grow(order.first, "pool_grow", order.ticket)
        elif order.command == SHRINK:
            self._shrink(order.first, "pool_shrink", ticket=order.ticket)
        elif order.command == AUTOSCALE:
            self._set_autoscale(order.first, order.second)
        elif order.command == HEARTBEAT and self._heartbeat is not None:
            self._heartbeat.write(ONLINE)

    def _adjusted(self, order: Order) -> None:
        """A child adjusted itself: keep it for the children forked later."""
        try:
            arguments = json.loads(order.payload)
        except ValueError:
            return
        if self.adjustments.record(order.command, arguments) and self._heartbeat is not None:
            self._heartbeat.update(queues=list(self.adjustments.queues))

    def _grow(self, count: int, why: str, ticket: str = "") -> None:
        for _ in range(count):
            slot = min(set(range(len(self.slots) + 1)) - self.wanted
                       - set(self.children.values()))
            self.wanted.add(slot)
            self._spawn(slot)
        if self.autoscaler is not None and self.concurrency > self.autoscaler.maximum:
            self.autoscaler.maximum = self.concurrency
        self._resized(why, ticket)

    def _shrink(self, count: int, why: str, slots: list[int] | None = None,
                ticket: str = "") -> None:
        """Stop ``count`` children (``slots``, else the idlest), warm: each finishes its
        task first. At least one child stays."""
        count = min(count, self.concurrency - 1)
        chosen = (slots or self._idlest())[:count]
        if not chosen:
            return
        pids = {slot: pid for pid, slot in self.children.items()}
        for slot in chosen:
            self.wanted.discard(slot)
            if slot in pids:
                self._send_stop(pids[slot])
        if self.autoscaler is not None and self.concurrency < self.autoscaler.minimum:
            self.autoscaler.minimum = self.concurrency
        self._resized(why, ticket)

    def _idlest(self) -> list[int]:
        """The pool's slots, those best stopped first: without a child (being replaced),
        then idle, then the highest."""
        living = set(self.children.values())
        return sorted(self.wanted, key=lambda s: (s in living, s in living and
                                                  self.slots[s].busy, -s))

    def _set_autoscale(self, maximum: int, minimum: int) -> None:
        if self.autoscaler is None:
            self.autoscaler = Autoscaler(maximum, minimum,
                                         self.wiring.conf.worker_autoscale_keepalive)
        else:
            self.autoscaler.bounds(maximum, minimum)
        log.info("autoscaling", max=maximum, min=minimum)

    def _autoscale(self, autoscaler: Autoscaler) -> None:
        living = set(self.children.values())
        busy = {s: s in living and self.slots[s].busy for s in self.wanted}
        grow, stop = autoscaler.decide(busy, time.monotonic())
        if grow:
            self._grow(grow, "autoscale")
        elif stop:
            self._shrink(len(stop), "autoscale", stop)

    def _resized(self, why: str, ticket: str = "") -> None:
        """Tell the children (their ``of`` and share of rate limits), the heartbeat row
        and the log the pool's new size (``ticket``: the control request that asked)."""
        self.steering.resized(self.concurrency, ticket)
        if self._heartbeat is not None:
            self._heartbeat.update(concurrency=self.concurrency, prefetch=self.prefetch)
        log.info("pool resized", children=self.concurrency, by=why)

    def _enforce_time_limits(self) -> None:
        now = time.monotonic()
        for pid, index in list(self.children.items()):
            running = self.slots[index].overdue(now)
            if running is None:
                continue
            log.error("task passed its time limit; killing its child process",
                      task_id=running.task_id, pid=pid)
            if running.record:
                self._record_time_limit(running)
            self._killed.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.slots[index].end()  # the child is gone; its replacement starts clean

    def _record_time_limit(self, running: Running) -> None:
        """FAILURE before the kill, so the redelivered message (late ack) finds the task
        finished and is acknowledged instead of run again."""
        if self._store is None:
            self._store = open_store(self.wiring.conf)
        error = TimeLimitExceeded(f"task {running.task_id} passed its time limit; its "
                                  "worker process was killed and replaced")
        self._announce_failure(running.task_id, error)
        change = StateChange(
            task_id=running.task_id, state=FAILURE, retries=running.retries,
            exception_type=f"{TimeLimitExceeded.__module__}.{TimeLimitExceeded.__qualname__}",
            exception_message=str(error), finished_at=dt.datetime.now(dt.timezone.utc))
        try:
            self._store.write([change])
            self._counters.outcome(FAILURE)
        except BackendError as exc:
            log.error("time limit failure not recorded", task_id=running.task_id,
                      error=str(exc))
            return
        # the completion notice a child sends after its commits: get() waits for it
        self._broadcast(NOTICES, encode_notice([running.task_id]), "completion notice",
                        running.task_id, NOTICE_EVERYONE)

    def _announce_failure(self, task_id: str, error: TimeLimitExceeded) -> None:
        """``task-failed`` for a task this supervisor killed: the child that would have
        sent it is gone. The supervisor keeps no connection (it forks), so this one is
        opened for it and closed before the next fork, and the event is published with
        a confirm (a fire-and-forget publish could still be queued at the close).
        Best effort, as every event."""
        conf = self.wiring.conf
        if not conf.worker_send_task_events:
            return
        hostname = f"{self.nodename or default_nodename()}:{os.getpid()}"
        body = TaskEvents(None, hostname).body("task-failed", {
            "uuid": task_id, "name": None, "exception": event_repr(error), "traceback": None})
        self._broadcast(TASK_EVENTS, body, "task-failed", task_id)

    def _broadcast(self, channel: FanOutChannel, body: bytes, what: str, task_id: str,
                   key: str = "") -> None:
        """Publish on a connection opened for it and closed before the next fork, with a
        confirm (a fire-and-forget publish could still be queued at the close). ``key``:
        a notice's (NOTICE_EVERYONE: the supervisor does not know who sent the task)."""
        try:
            broker = open_broker(self.wiring.conf)
            try:
                broker.broadcast(replace(channel, confirmed=True), body, key)
            finally:
                broker.close()
        except HutchError as exc:
            log.warning("task event not sent", event_type=what, task_id=task_id,
                        error=str(exc))

    def _tell_systemd(self) -> None:
        """READY once every child consumes, STATUS when that changes, STOPPING at
        shutdown; WATCHDOG=1 while every living child's pulse is fresh."""
        if self._stopping:
            text = "cold shutdown: children killed" if self._cold_stop else \
                "warm shutdown: children finish their running task"
            if text != self._told:
                self._told = text
                systemd.stopping(text)
            return
        living = list(self.children.values())
        consuming = self.pulses.count_consuming([s for s in living if s in self.wanted])
        queues = ",".join(self.queues)
        if consuming == self.concurrency:
            text = f"consuming {queues}; {_children(consuming)}"
        elif not self._ready:
            text = f"starting: {consuming} of {_children(self.concurrency)} consuming {queues}"
        else:
            text = f"consuming {queues}; {consuming} of {_children(self.concurrency)} (the " \
                   f"others are starting)"
        if text != self._told:
            self._told = text
            if consuming == self.concurrency and not self._ready:
                self._ready = True
                systemd.ready(text)
                worker_ready.send(self)
            else:
                systemd.status(text)
        self._watch_children(living)

    def _watch_children(self, living: list[int]) -> None:
        """Ping the watchdog unless a child stopped showing it is alive (then systemd
        restarts the worker after WatchdogSec)."""
        if self._watchdog.every is None:
            return
        stale = self.pulses.stale(living, max(MIN_STALE, self._watchdog.every))
        if stale and stale != self._stale:
            pids = sorted(pid for pid, index in self.children.items() if index in stale)
            log.error("worker child not alive (stopped, or its consumer died): watchdog "
                      "pings stop, systemd restarts the worker", pids=pids)
        elif self._stale and not stale:
            log.warning("worker children alive again: watchdog pings resume")
        self._stale = stale
        if not stale:
            self._watchdog.alive()

    def _relay(self, sig: signal.Signals) -> None:
        """SIGUSR1 or SIGHUP, handled here: to every child too."""
        for pid in [*self.children, *([self.sidecar_pid] if self.sidecar_pid else [])]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _on_stop(self, signum: int = 0, *_: object) -> None:
        """SIGTERM or SIGINT, to this process alone or to its whole group (the children
        ignore those): the first is warm, the second cold. ``signum`` 0: a shutdown
        command."""
        if self._stopping:
            self._cold(signum)
            return
        self._stopping = 1
        log.info("warm shutdown: children finish their running task")
        self._shutting_down(signum, "Warm")
        self._signal_children()

    def _cold(self, signum: int = signal.SIGQUIT) -> None:
        self._stopping += 1
        self._cold_stop = True
        log.warning("cold shutdown: killing children; unfinished tasks return to the queue")
        self._shutting_down(signum, "Cold")
        self._signal_children()

    def _shutting_down(self, signum: int, how: str) -> None:
        worker_shutting_down.send(self.nodename or default_nodename(),
                                  sig=signal.Signals(signum).name if signum else None,
                                  how=how, exitcode=0 if how == "Warm" else 1)

    def _signal_children(self) -> None:
        for pid in [*self.children, *([self.sidecar_pid] if self.sidecar_pid else [])]:
            self._send_stop(pid)

    def _send_stop(self, pid: int) -> None:
        """Warm: WARM_STOP to a worker child (the same once more does no harm), SIGTERM to
        the sidecar (a beat stops on any number of them). Cold: SIGKILL."""
        sig = signal.SIGKILL if self._cold_stop else (
            signal.SIGTERM if pid == self.sidecar_pid else WARM_STOP)
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _children(count: int) -> str:
    return f"{count} child" if count == 1 else f"{count} children"


def _fork(kind: str, dispositions: Callable[[], None], run: Callable[[], int]) -> int:
    """Fork a child that sets its signal ``dispositions``, runs ``run`` and exits with
    its code. Called with the stop signals held (worker/signals.py)."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _die_with_parent(parent)
            systemd.forget()  # NotifyAccess=main: the supervisor speaks for the worker
            dispositions()
            code = run()
        except BaseException as exc:  # noqa: BLE001 - report and leave the child
            log.error(f"{kind} child failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            os._exit(code)
    return pid


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """A child must not outlive a supervisor killed with SIGKILL (it would keep consuming
    with nobody to stop it): Linux sends it SIGKILL when the supervisor dies, and its
    unacknowledged messages go back to RabbitMQ."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: children are stopped by the unit
        return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os._exit(1)
