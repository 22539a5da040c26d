"""The prefork pool: a supervisor forking N single-slot worker processes.

Each child opens its own broker connection and result-store connection and
consumes on its own, so tasks run in parallel on every core with no pipe
between parent and child. The supervisor only starts, watches and replaces
children, and relays shutdown: SIGTERM is warm (children finish their task),
a second SIGTERM or SIGQUIT is cold (children are killed; their unacknowledged
messages go back to RabbitMQ).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from .process import WorkerProcess

if TYPE_CHECKING:
    from ..app import Hutch

log = structlog.get_logger("hutch.worker")

RESPAWN_PAUSE = 1.0


class PreforkSupervisor:
    def __init__(self, app: Hutch, queues: Sequence[str], concurrency: int,
                 nodename: str | None = None) -> None:
        self.app = app
        self.queues = list(queues)
        self.concurrency = concurrency
        self.nodename = nodename
        self.children: dict[int, int] = {}  # pid -> slot
        self._stopping = 0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGQUIT, lambda *_: self._cold())
        for slot in range(self.concurrency):
            self._spawn(slot)
        log.info("prefork supervisor ready", children=sorted(self.children),
                 queues=self.queues)
        while self.children:
            self._reap()
            time.sleep(0.1)
        log.info("all children stopped")
        return 0

    def _spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                    signal.signal(sig, signal.SIG_DFL)
                code = WorkerProcess(self.app, self.queues, pool="solo", concurrency=1,
                                     nodename=self.nodename,
                                     rate_split=self.concurrency).run()
            except BaseException as exc:  # noqa: BLE001 - report and leave the child
                log.error("worker child failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                os._exit(code)
        self.children[pid] = slot

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if slot is None:
                continue
            if not self._stopping:
                log.warning("worker child exited; replacing it", pid=pid,
                            exit=os.waitstatus_to_exitcode(status))
                time.sleep(RESPAWN_PAUSE)
                self._spawn(slot)

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
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
