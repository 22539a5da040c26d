"""The worker's heartbeat: its ``hutch_workers`` row, rewritten every
``worker_heartbeat_interval`` seconds (hutch.results.workers holds the SQL).

One writer per worker node: the process that owns the worker as a whole, a
``threads``/``asyncio``/``solo`` worker process or the prefork supervisor. Prefork
children never write the row; their outcome counts reach the supervisor through
shared memory (worker/counters.py's Tally).

The row is written from a thread of its own, so a slow or unreachable database
never delays the supervisor's reaping and time limits nor a worker's consuming. A
write that fails is logged (once when the database stops answering, once when it
answers again) and tried again at the next interval; it never stops the worker.
State: online while running, stopping once a warm shutdown began (written at once,
not at the next interval), offline when the worker stops cleanly. A worker killed
without a word reads offline after 3 intervals (hutch.results.workers).

Forking: the prefork supervisor forks while this thread runs. :meth:`Heartbeat.paused`
holds a write back while a child is forked, so no child starts with a copy of a
lock this thread held mid-write (its logging, its connection pool). The other way
round, a fork waits for a write in progress: when the database host hangs (no
reset), a child's replacement waits for the connection attempt to fail, which
costs nothing, since a child cannot run tasks without the database anyway.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..logs import get_logger
from ..results.store import ResultStore
from ..results.workers import OFFLINE, WorkerBeat, WorkerStore
from .health import Outage

log = get_logger("hutch.worker")

STEP = 0.25
"""How often the thread looks for a change of state between heartbeats."""
STOP_WAIT = 5.0
"""Longest a stopping worker waits for its last (offline) write."""


@dataclass(frozen=True)
class Layout:
    """What a worker node is, written with every heartbeat (fixed for its life, but for a
    prefork pool's size and the queues: :meth:`Heartbeat.update`)."""

    hostname: str
    pool: str
    concurrency: int
    queues: Sequence[str]
    prefetch: int
    app: str | None = None


class Heartbeat:
    """Writes one worker's row every ``interval`` seconds until :meth:`stop`.

    ``state()`` says online or stopping; ``counts()`` the outcome totals;
    ``processes()`` the pids of the worker processes (the prefork children, or this
    process) whose memory is added to this one's.
    """

    def __init__(self, store: ResultStore, layout: Layout, interval: float, *,
                 state: Callable[[], str], counts: Callable[[], dict[str, int]],
                 processes: Callable[[], Sequence[int]] = lambda: [os.getpid()]) -> None:
        self.workers = WorkerStore(store)
        self.interval = interval
        self._state, self._counts, self._processes = state, counts, processes
        self._fixed = WorkerBeat(
            hostname=layout.hostname, pid=os.getpid(), version=hutch_version(), pool=layout.pool,
            concurrency=layout.concurrency, processes=0, queues=list(layout.queues),
            prefetch=layout.prefetch, state=OFFLINE, heartbeat_interval=interval,
            started_at=_utcnow(), app=layout.app, python_version=platform.python_version(),
            platform=platform.platform(terse=True))
        self._stop = threading.Event()
        self._writing = threading.Lock()
        self._outage = Outage("worker heartbeat not written: the result store does not "
                              "answer; retried every interval",
                              "worker heartbeat written again")
        self._thread = threading.Thread(target=self._run, name="hutch-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Write offline (a clean exit) and end the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT)

    def update(self, **fields: Any) -> None:
        """The pool grew or shrank, the queues changed: the next rows say so."""
        self._fixed = replace(self._fixed, **fields)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No write in progress while inside (the supervisor forks here)."""
        with self._writing:
            yield

    def _run(self) -> None:
        self._warn_if_taken()
        written: str | None = None
        due = 0.0
        while True:
            state = OFFLINE if self._stop.is_set() else self._state()
            now = time.monotonic()
            if state != written or now >= due:
                self.write(state)
                written, due = state, now + self.interval
            if state == OFFLINE:
                return
            self._stop.wait(min(STEP, max(0.0, due - now)))

    def _warn_if_taken(self) -> None:
        """Two live workers with one name would overwrite each other's row: say so. (A
        predecessor killed moments ago still reads online too: the line says so.)"""
        hostname = self._fixed.hostname
        try:
            rows = self.workers.workers(hostname)
        except Exception:  # noqa: BLE001 - the first write will say what is wrong
            return
        if rows and rows[0].state != OFFLINE and rows[0].pid != self._fixed.pid:
            log.warning("another worker with this name is online (or was killed moments "
                        "ago); give each worker its own -n name@host: they share one "
                        "hutch_workers row", hostname=hostname, other_pid=rows[0].pid,
                        other_seen_ago=round(rows[0].last_heartbeat_age, 1))

    def write(self, state: str) -> bool:
        """One heartbeat with ``state``; False (logged) when the database refused it."""
        with self._writing:
            try:
                self.workers.beat(self.sample(state))
            except Exception as exc:  # noqa: BLE001 - a heartbeat never stops the worker
                self._outage.begins("write the worker heartbeat", exc, self.interval)
                return False
            self._outage.ends()
            return True

    def sample(self, state: str) -> WorkerBeat:
        """The row as of now."""
        pids = list(self._processes())
        counts = self._counts()
        load = _loadavg()
        return replace(
            self._fixed, state=state, processes=len(pids),
            processed=counts.get("processed", 0), succeeded=counts.get("succeeded", 0),
            failed=counts.get("failed", 0), retried=counts.get("retried", 0),
            loadavg_1=load[0], loadavg_5=load[1], loadavg_15=load[2],
            rss_bytes=rss_bytes({os.getpid(), *pids}))


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes(pids: Sequence[int] | set[int]) -> int | None:
    """Resident memory of ``pids`` together, from /proc (None where there is none); a
    process that exited meanwhile counts nothing."""
    total, seen = 0, False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                total += int(statm.read().split()[1]) * PAGE_SIZE
                seen = True
        except (OSError, ValueError, IndexError):
            continue
    return total if seen else None


def _loadavg() -> tuple[float | None, float | None, float | None]:
    try:
        one, five, fifteen = os.getloadavg()
    except (OSError, AttributeError):
        return None, None, None
    return round(one, 2), round(five, 2), round(fifteen, 2)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def hutch_version() -> str:
    """The installed hutch's version (``hutch.__version__``, which this layer may not
    import: the package's top is above it)."""
    try:
        return version("hutch")
    except PackageNotFoundError:
        return "unknown"
