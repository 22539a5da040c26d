"""A threads worker's pool that grows and shrinks: ``pool_grow``/``pool_shrink`` and
``--autoscale MAX,MIN``, as a prefork supervisor does with its children.

The rule is the prefork pool's (worker/autoscale.py), applied to threads: while
every thread is busy one more starts each second, up to MAX; a thread idle for
``worker_autoscale_keepalive`` seconds retires, down to MIN. A retiring thread
finishes its task first and takes no other; deliveries waiting in the pool's local
queue stay there for the threads that remain (worker/pools.py). After each change
the worker is told the new size (``resized``): its consumer's prefetch follows it,
and so do its heartbeat row and ``inspect stats``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..logs import get_logger
from .autoscale import Autoscaler
from .pools import ThreadPool

log = get_logger("hutch.worker")

TICK = 0.2
"""Seconds between two looks of the autoscaler at the threads."""


class ThreadScaler:
    """Resizes ``pool``; ``resized(size, why)`` is called after each change, under a
    lock (one change at a time, whichever thread asks)."""

    def __init__(self, pool: ThreadPool, resized: Callable[[int, str], None],
                 autoscale: tuple[int, int] | None = None, keepalive: float = 30.0) -> None:
        self.pool = pool
        self._resized = resized
        self._keepalive = keepalive
        self.autoscaler = Autoscaler(*autoscale, keepalive) if autoscale else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticking: threading.Thread | None = None
        self._started = False

    def size(self) -> int:
        return self.pool.size

    def start(self) -> None:
        """Begin autoscaling (if on): once the worker consumes."""
        self._started = True
        if self.autoscaler is not None:
            self._tick_in_background()

    def stop(self) -> None:
        """No more changes (a warm shutdown begins)."""
        self._stop.set()
        if self._ticking is not None and self._ticking is not threading.current_thread():
            self._ticking.join(5)

    def grow(self, count: int, why: str) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            size = self.pool.grow(count)
            if self.autoscaler is not None and size > self.autoscaler.maximum:
                self.autoscaler.maximum = size
            self._resized(size, why)

    def shrink(self, count: int, why: str, slots: list[int] | None = None) -> None:
        """Retire ``count`` threads (``slots``, else the idlest); one always stays."""
        with self._lock:
            if self._stop.is_set():
                return
            size = self.pool.shrink(count, slots)
            if self.autoscaler is not None and size < self.autoscaler.minimum:
                self.autoscaler.minimum = size
            self._resized(size, why)

    def set_autoscale(self, maximum: int, minimum: int) -> None:
        """``hutch control autoscale MAX MIN``: new bounds, or autoscaling turned on."""
        with self._lock:
            if self.autoscaler is None:
                self.autoscaler = Autoscaler(maximum, minimum, self._keepalive)
            else:
                self.autoscaler.bounds(maximum, minimum)
        log.info("autoscaling", max=maximum, min=minimum)
        if self._started:
            self._tick_in_background()

    def tick(self, now: float | None = None) -> None:
        """One look at the threads: add or retire as the autoscaler decides."""
        autoscaler = self.autoscaler
        if autoscaler is None:
            return
        with self._lock:
            grow, stop = autoscaler.decide(self.pool.busy(), time.monotonic()
                                           if now is None else now)
        if grow:
            self.grow(grow, "autoscale")
        elif stop:
            self.shrink(len(stop), "autoscale", stop)

    def _tick_in_background(self) -> None:
        if self._ticking is not None or self._stop.is_set():
            return
        self._ticking = threading.Thread(target=self._tick_until_stopped,
                                         name="hutch-autoscale", daemon=True)
        self._ticking.start()

    def _tick_until_stopped(self) -> None:
        while not self._stop.wait(TICK):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a bug here must not end autoscaling silently
                log.exception("autoscaling failed; trying again")
