"""The prefork pool: a supervisor forking N single-slot worker processes.

Each child opens its own broker connection and result-store connection and
consumes on its own, so tasks run in parallel on every core with no pipe
between parent and child. The supervisor only starts, watches and replaces
children, and relays shutdown: SIGTERM is warm (children finish their task),
a second SIGTERM or SIGQUIT is cold (children are killed; their unacknowledged
messages go back to RabbitMQ).

Hard time limits are the supervisor's job too: each child publishes its running
task's deadline in a shared-memory :class:`~hutch.worker.timelimits.Slot`; past
it, the supervisor records FAILURE with ``TimeLimitExceeded``, kills the child
with SIGKILL and starts a new one (nothing inside the child could be trusted to
stop a task stuck in C code).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from ..connections import open_store
from ..errors import BackendError, TimeLimitExceeded
from ..results.records import FAILURE, StateChange
from ..results.store import ResultStore
from .process import WorkerProcess
from .timelimits import Running, Slot

if TYPE_CHECKING:
    from ..app import Hutch

log = structlog.get_logger("hutch.worker")

RESPAWN_PAUSE = 1.0


class PreforkSupervisor:
    def __init__(self, app: Hutch, queues: Sequence[str], concurrency: int,
                 nodename: str | None = None,
                 sidecar: Callable[[], int] | None = None) -> None:
        """``sidecar``: run in one more child of its own, restarted like the others and
        stopped with them (``worker -B``: the embedded beat)."""
        self.app = app
        self.queues = list(queues)
        self.concurrency = concurrency
        self.nodename = nodename
        self.children: dict[int, int] = {}  # pid -> slot index
        self.slots = [Slot() for _ in range(concurrency)]
        self._stopping = 0
        self._store: ResultStore | None = None
        self.sidecar = sidecar
        self.sidecar_pid: int | None = None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGQUIT, lambda *_: self._cold())
        for slot in range(self.concurrency):
            self._spawn(slot)
        self._spawn_sidecar()
        log.info("prefork supervisor ready", children=sorted(self.children),
                 queues=self.queues)
        while self.children or self.sidecar_pid:
            self._reap()
            self._enforce_time_limits()
            time.sleep(0.1)
        log.info("all children stopped")
        if self._store is not None:
            self._store.close()
        return 0

    def _spawn(self, slot: int) -> None:
        self.children[_fork("worker", lambda: WorkerProcess(
            self.app, self.queues, pool="solo", concurrency=1, nodename=self.nodename,
            slot=self.slots[slot], rate_split=self.concurrency).run())] = slot

    def _spawn_sidecar(self) -> None:
        if self.sidecar is not None:
            self.sidecar_pid = _fork("sidecar", self.sidecar)

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
                if not self._stopping:
                    log.warning("sidecar child exited; replacing it", pid=pid)
                    time.sleep(RESPAWN_PAUSE)
                    if not self._stopping:  # a stop may have come during the pause
                        self._spawn_sidecar()
                continue
            slot = self.children.pop(pid, None)
            if slot is None:
                continue
            if not self._stopping:
                log.warning("worker child exited; replacing it", pid=pid,
                            exit=os.waitstatus_to_exitcode(status))
                time.sleep(RESPAWN_PAUSE)
                if not self._stopping:  # a child forked now would miss the stop signal
                    self._spawn(slot)

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
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.slots[index].end()  # the child is gone; its replacement starts clean

    def _record_time_limit(self, running: Running) -> None:
        """FAILURE before the kill, so the redelivered message (late ack) finds the task
        finished and is acknowledged instead of run again."""
        if self._store is None:
            self._store = open_store(self.app.conf)
        error = TimeLimitExceeded(f"task {running.task_id} passed its time limit; its "
                                  "worker process was killed and replaced")
        change = StateChange(
            task_id=running.task_id, state=FAILURE, retries=running.retries,
            exception_type=f"{TimeLimitExceeded.__module__}.{TimeLimitExceeded.__qualname__}",
            exception_message=str(error), finished_at=dt.datetime.now(dt.timezone.utc))
        try:
            self._store.write([change])
        except BackendError as exc:
            log.error("time limit failure not recorded", task_id=running.task_id,
                      error=str(exc))

    def _on_stop(self, *_: object) -> None:
        self._stopping += 1
        if self._stopping > 1:
            self._cold()
            return
        log.info("warm shutdown: children finish their running task")
        self._signal_children(signal.SIGTERM)

    def _cold(self) -> None:
        self._stopping += 1
        log.warning("cold shutdown: killing children; unfinished tasks return to the queue")
        self._signal_children(signal.SIGKILL)

    def _signal_children(self, sig: int) -> None:
        for pid in [*self.children, *([self.sidecar_pid] if self.sidecar_pid else [])]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def _fork(kind: str, run: Callable[[], int]) -> int:
    """Fork a child that runs ``run`` with default signal handlers and exits with its code."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _die_with_parent(parent)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_DFL)
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
