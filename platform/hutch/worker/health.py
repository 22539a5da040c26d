"""Whether the worker's dependencies answer: retries with backoff, one log line when an
outage begins and one when it ends, and the result store's health that decides when
a task may start.

A task whose outcome cannot be written should not run. So before a task starts,
the executor asks :meth:`StoreWatch.answering`: free while the store's commits keep
succeeding; otherwise the recorder first waits until the outcomes recorded so far
are committed, for as long as the store does not answer (``Recorder.wait_until_answering``).
A worker killed during an outage then runs again only the tasks that were running
(and the last batch of outcomes that did not get through), never its prefetch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import BackendError, BrokerError
from ..logs import get_logger

log = get_logger("hutch.worker")

T = TypeVar("T")

MAX_BACKOFF = 5.0
FIRST_BACKOFF = 0.1
FRESH = 0.1
"""A task starts at once while a commit succeeded this recently, so tasks shorter than
this keep the batches full; after a longer task, the next one first waits for the
outcomes recorded so far (a commit of a few milliseconds), so an unreachable store
stops it."""
STALL = 0.1
"""A store action unanswered for this long holds new tasks back until it is answered."""


class Outage:
    """Logs once when a dependency stops answering and once when it answers again; the
    retries in between are logged at debug level only."""

    def __init__(self, began: str, ended: str) -> None:
        self._began, self._ended = began, ended
        self._since: float | None = None
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self._since is not None

    def begins(self, what: str, exc: BaseException, retry_in: float) -> None:
        with self._lock:
            first, self._since = self._since is None, self._since or time.monotonic()
        if first:
            log.warning(self._began, action=what, error=str(exc))
        else:
            log.debug(f"could not {what}; retrying", error=str(exc), retry_in=retry_in)

    def ends(self) -> None:
        if self._since is None:
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            log.warning(self._ended, down_for=round(time.monotonic() - since, 3))


def retrying(what: str, action: Callable[[], T], outage: Outage,
             pause: Callable[[float], object] = time.sleep) -> T:
    """``action()`` until it succeeds, backing off up to MAX_BACKOFF seconds between
    tries; store and broker failures are never given up on (nothing may be lost).
    ``pause``: how to wait between tries (an ``Event.wait`` an action may watch, so a
    stop ends the wait)."""
    delay = FIRST_BACKOFF
    while True:
        try:
            value = action()
        except (BackendError, BrokerError) as exc:
            outage.begins(what, exc, delay)
            pause(delay)
            delay = min(delay * 2, MAX_BACKOFF)
            continue
        outage.ends()
        return value


class StoreWatch:
    """The result store as the worker's writer threads see it."""

    def __init__(self) -> None:
        self.outage = Outage(
            "result store unreachable: running tasks finish, no new task starts until "
            "it answers", "result store answers again: tasks start again")
        self._answered_at = time.monotonic()
        self._asking: dict[int, float] = {}  # writer thread -> when its action began

    def call(self, what: str, action: Callable[[], T], *, outcomes: bool = True) -> T:
        """A store action, retried until it succeeds, and timed for :meth:`answering`.
        ``outcomes=False``: its success says nothing about the outcomes recorded so far
        (a claim), so it does not count as the store answering them."""
        thread = threading.get_ident()
        self._asking[thread] = time.monotonic()
        try:
            value = retrying(what, action, self.outage)
        finally:
            self._asking.pop(thread, None)
        if outcomes:
            self._answered_at = time.monotonic()
        return value

    def answering(self) -> bool:
        """Outcomes were committed within FRESH seconds, and no store action has waited
        for STALL."""
        now = time.monotonic()
        if self.outage.active or now - self._answered_at >= FRESH:
            return False
        return all(now - since < STALL for since in list(self._asking.values()))
