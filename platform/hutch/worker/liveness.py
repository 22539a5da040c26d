"""Whether a worker is alive, for systemd's watchdog (``WatchdogSec=``).

systemd restarts a service whose main process stops sending ``WATCHDOG=1``
(hutch.systemd). A worker pings only while its consumer is alive: a worker whose
consumer thread died, or a process that stopped running altogether (stopped with
SIGSTOP, wedged in C code that holds the GIL), sends none, and is restarted.
A long task is not a hang: tasks run in other threads (or, in a prefork child, the
main one) and the supervisor's time limits deal with those.

- A worker of its own (threads, asyncio, solo) pings from a thread of its own
  (:func:`keep_beating`) while its consumer is alive.
- A prefork child stamps its slot of :class:`Pulses` (shared memory) the same
  way, and says there when it consumes; the supervisor, the only process systemd
  listens to, pings while every living child's stamp is fresh, and tells systemd
  it is ready once all of them consume.
"""

from __future__ import annotations

import ctypes
import multiprocessing.sharedctypes as shared
import threading
import time
from collections.abc import Callable

STAMP_EVERY = 1.0
"""Seconds between two stamps of a prefork child (and checks of a worker's consumer)."""

MIN_STALE = 3 * STAMP_EVERY
"""A child's stamp is stale after max(MIN_STALE, the watchdog's ping interval)."""


class Pulses:
    """Per prefork child slot: when it last showed it is alive (``time.monotonic()``,
    one clock for every process of a host), and whether it consumes. Written by the
    child, read by the supervisor, without a lock (one double and one flag each). A
    slot added as the pool grows is made by the supervisor before it forks the child."""

    def __init__(self, count: int) -> None:
        self._stamps: list[ctypes.Array[ctypes.c_double]] = []
        self._consuming: list[ctypes.Array[ctypes.c_bool]] = []
        self.ensure(count - 1)

    def ensure(self, index: int) -> None:
        """Make the slots up to ``index`` (in the supervisor, before the fork)."""
        while len(self._stamps) <= index:
            self._stamps.append(shared.RawArray(ctypes.c_double, 1))
            self._consuming.append(shared.RawArray(ctypes.c_bool, 1))

    def born(self, index: int) -> None:
        """A new child in slot ``index``: fresh until it stamps for itself, not consuming."""
        self.ensure(index)
        self._stamps[index][0] = time.monotonic()
        self._consuming[index][0] = False

    def stamp(self, index: int) -> None:
        self._stamps[index][0] = time.monotonic()

    def consuming(self, index: int) -> None:
        self._consuming[index][0] = True

    def stale(self, indexes: list[int], older_than: float) -> list[int]:
        now = time.monotonic()
        return [i for i in indexes if now - self._stamps[i][0] > older_than]

    def count_consuming(self, indexes: list[int]) -> int:
        return sum(1 for i in indexes if self._consuming[i][0])


def keep_beating(alive: Callable[[], bool], beat: Callable[[], None],
                 done: threading.Event, every: float = STAMP_EVERY) -> threading.Thread:
    """A daemon thread calling ``beat`` every ``every`` seconds while ``alive()``, until
    ``done`` is set."""
    def run() -> None:
        while not done.wait(every):
            if alive():
                beat()

    thread = threading.Thread(target=run, name="hutch-liveness", daemon=True)
    thread.start()
    return thread
