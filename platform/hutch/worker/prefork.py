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
import os
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from .. import systemd
from ..diagnostics import Reloader, install
from ..errors import BackendError, TimeLimitExceeded
from ..logs import get_logger
from ..results.records import FAILURE, StateChange
from ..results.store import ResultStore, open_store
from ..results.workers import ONLINE, STOPPING
from .counters import Counters, Tally
from .heartbeat import Heartbeat, Layout
from .liveness import MIN_STALE, Pulses
from .process import PreforkChild, WorkerProcess, default_nodename
from .respawns import Respawns
from .signals import WARM_STOP, as_sidecar_child, as_worker_child, held
from .timelimits import Running, Slot

if TYPE_CHECKING:
    from .wiring import Wiring

log = get_logger("hutch.worker")

SIDECAR = "sidecar"
"""The sidecar's key next to the worker children's slot indexes (for its replacement)."""

class PreforkSupervisor:
    def __init__(self, wiring: Wiring, queues: Sequence[str], concurrency: int,
                 nodename: str | None = None,
                 sidecar: Callable[[], int] | None = None) -> None:
        """``sidecar``: run in one more child of its own, restarted like the others and
        stopped with them (``worker -B``: the embedded beat)."""
        self.wiring = wiring
        self.queues = list(queues)
        self.concurrency = concurrency
        self.nodename = nodename
        self.children: dict[int, int] = {}  # pid -> slot index
        self.slots = [Slot() for _ in range(concurrency)]
        self.tally = Tally(concurrency + 1)
        """Outcome counts: a row per child slot, the last for the time-limit failures
        this supervisor records itself; summed by the heartbeat."""
        self._counters = Counters(self.tally.row(concurrency))
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
        signal.signal(signal.SIGQUIT, lambda *_: self._cold())
        signal.signal(WARM_STOP, signal.SIG_IGN)  # a child's word: `systemctl kill` sends all
        install(self.reloader, relay=self._relay)
        for slot in range(self.concurrency):
            self._spawn(slot)
        self._spawn(SIDECAR)
        log.info("prefork supervisor ready", children=sorted(self.children),
                 queues=self.queues)
        self._heartbeat = self._start_heartbeat()
        while self.children or self.sidecar_pid or (self._respawns.pending
                                                   and not self._stopping):
            self._reap()
            for due in self._respawns.due(time.monotonic()):
                self._spawn(due)
            self._enforce_time_limits()
            self._tell_systemd()
            time.sleep(0.1)
        log.info("all children stopped")
        if self._heartbeat is not None:
            self._heartbeat.stop()  # offline: a clean exit
        if self._store is not None:
            self._store.close()
        return 1 if self._cold_stop else 0

    def _spawn(self, slot: int | str) -> None:
        """Fork the child for ``slot`` (an index, or SIDECAR), unless a stop came."""
        with self._no_heartbeat_write(), held():
            if self._stopping:
                return
            if isinstance(slot, int):
                self.pulses.born(slot)
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
                        self.queues, self.concurrency * conf.worker_prefetch_multiplier,
                        self.wiring.app_name)
        return Heartbeat(self._store, layout, conf.worker_heartbeat_interval,
                         state=lambda: STOPPING if self._stopping else ONLINE,
                         counts=self.tally.totals,
                         processes=lambda: list(self.children.copy())).start()

    def _no_heartbeat_write(self) -> AbstractContextManager[None]:
        """While forking: no child copies a lock the heartbeat thread holds mid-write."""
        return self._heartbeat.paused() if self._heartbeat is not None else nullcontext()

    def _run_child(self, slot: int) -> int:
        child = PreforkChild(index=slot, of=self.concurrency, slot=self.slots[slot],
                             pulses=self.pulses, counts=self.tally.row(slot))
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
        pause = self._respawns.exited(slot, lived, now, expected=expected)
        log.warning(message, pid=pid, exit=os.waitstatus_to_exitcode(status),
                    lived=round(lived, 3), replaced_in=pause)

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
        consuming = self.pulses.count_consuming(living)
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

    def _on_stop(self, *_: object) -> None:
        """SIGTERM or SIGINT, to this process alone or to its whole group (the children
        ignore those): the first is warm, the second cold."""
        if self._stopping:
            self._cold()
            return
        self._stopping = 1
        log.info("warm shutdown: children finish their running task")
        self._signal_children()

    def _cold(self) -> None:
        self._stopping += 1
        self._cold_stop = True
        log.warning("cold shutdown: killing children; unfinished tasks return to the queue")
        self._signal_children()

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
