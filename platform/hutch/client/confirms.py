"""Publishes handed over without waiting for RabbitMQ's confirm (``broker_confirm_wait``
off).

In a loop of ``delay()`` the caller spends most of each call waiting for the confirm
of its one message (docs/performance.md, "The delay() loop"). A client with
``broker_confirm_wait=False`` hands the message to the publisher and returns; the
message is kept here until RabbitMQ answers:

- confirmed: its PENDING row is queued, as after a waited publish;
- the connection dropped first: published again by this module's thread with the
  call's ``retry_policy``, as a waited ``submit()`` would have been (a copy that did
  reach RabbitMQ runs once: a task id runs once);
- nacked, returned as unroutable, or out of retries: logged at ERROR with its task ids
  and kept on the handle, whose ``confirmed()`` and ``get()`` raise it.

At most :data:`WINDOW` submits wait for their confirms at once; one more waits for room
(up to ``broker_confirm_timeout``, then PublishError), so a broker that stops
confirming slows the caller instead of filling its memory. ``flush()`` waits for
every one; ``Client.close()`` and interpreter exit call it.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence

from ..brokers.base import Broker, Confirmation
from ..errors import BrokerUnavailable, PublishError
from ..logs import get_logger
from ..messages import TaskMessage, Wire, resent
from .base import next_pause, publish_retrying

log = get_logger("hutch.client")

WINDOW = 10_000
"""Submits whose confirm may be outstanding at once (a few MB of messages at most)."""

Routed = list[tuple[str, Wire]]


class Unconfirmed:
    """One submit's messages until RabbitMQ confirmed them, or they failed for good."""

    __slots__ = ("_settled", "error", "messages", "pauses", "routed")

    def __init__(self, routed: Routed, messages: Sequence[TaskMessage],
                 pauses: Iterator[float]) -> None:
        self.routed = routed
        self.messages = messages
        self.pauses = pauses
        """The call's remaining waits between publish attempts (its retry_policy)."""
        self.error: BaseException | None = None
        self._settled = threading.Event()

    def confirmed(self, timeout: float | None = None) -> bool:
        """True once confirmed, False if ``timeout`` ran out first; raises the error
        that made the publish fail for good."""
        if not self._settled.wait(timeout):
            return False
        if self.error is not None:
            raise self.error
        return True

    @property
    def task_ids(self) -> list[str]:
        return [m.id for m in self.messages]

    def finish(self, error: BaseException | None) -> None:
        self.error = error
        self._settled.set()


class ConfirmTracker:
    """Keeps one client's handed-over submits until each is confirmed or failed."""

    def __init__(self, broker: Callable[[], Broker], on_confirmed: Callable[[Unconfirmed], None],
                 confirm_timeout: float) -> None:
        """``broker``: the client's broker (a republish uses it, lazily); ``on_confirmed``
        runs in the publisher's I/O thread for each confirmed submit, so it must be
        quick (the PENDING writer's queue)."""
        self._broker = broker
        self._on_confirmed = on_confirmed
        self._confirm_timeout = confirm_timeout
        self._room = threading.BoundedSemaphore(WINDOW)
        self._lock = threading.Lock()
        self._open: set[Unconfirmed] = set()
        self._drained = threading.Condition(self._lock)
        self._again: queue.SimpleQueue[tuple[Unconfirmed, BrokerUnavailable]] = \
            queue.SimpleQueue()
        self._resender: threading.Thread | None = None
        self.republished = 0
        """Submits whose connection dropped before their confirm, published again."""
        atexit.register(_flush_at_exit, weakref.ref(self))

    def hand_over(self, routed: Routed, messages: Sequence[TaskMessage],
                  pauses: Iterator[float]) -> Unconfirmed:
        """Publish without waiting; raises PublishError when the window stays full for
        ``broker_confirm_timeout`` and BrokerUnavailable when the publisher is closed."""
        if not self._room.acquire(timeout=self._confirm_timeout):
            raise PublishError(f"{WINDOW} submits have waited {self._confirm_timeout:g}s for "
                               "RabbitMQ's confirms; is the broker blocking publishers?")
        entry = Unconfirmed(routed, messages, pauses)
        with self._lock:
            self._open.add(entry)
        try:
            confirmation = self._broker().publish_later(routed)
        except BaseException as exc:
            self._close(entry, exc)
            raise
        confirmation.add_done_callback(lambda c: self._answered(entry, c))
        return entry

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every submit handed over so far is confirmed or failed for good."""
        with self._drained:
            return self._drained.wait_for(lambda: not self._open, timeout)

    @property
    def outstanding(self) -> int:
        with self._lock:
            return len(self._open)

    # -- answers ----------------------------------------------------------------------
    def _answered(self, entry: Unconfirmed, confirmation: Confirmation) -> None:
        """The publisher's I/O thread: the broker answered, or the connection dropped."""
        error = confirmation.error
        if error is None:
            self._confirmed(entry)
        elif isinstance(error, BrokerUnavailable):
            self._publish_again(entry, error)
        else:
            self._failed(entry, error)

    def _confirmed(self, entry: Unconfirmed) -> None:
        try:
            self._on_confirmed(entry)
        finally:
            self._close(entry, None)

    def _failed(self, entry: Unconfirmed, error: BaseException) -> None:
        log.error("task message not accepted by the broker: not queued",
                  task_ids=entry.task_ids, error=str(error))
        self._close(entry, error)

    def _close(self, entry: Unconfirmed, error: BaseException | None) -> None:
        entry.finish(error)
        with self._drained:
            self._open.discard(entry)
            if not self._open:
                self._drained.notify_all()
        self._room.release()

    # -- publishing again after a lost connection --------------------------------------
    def _publish_again(self, entry: Unconfirmed, lost: BrokerUnavailable) -> None:
        with self._lock:
            self.republished += 1
            if self._resender is None:
                self._resender = threading.Thread(target=self._resend_loop, daemon=True,
                                                  name="hutch-confirm-resender")
                self._resender.start()
        self._again.put((entry, lost))

    def _resend_loop(self) -> None:
        while True:
            self._resend(*self._again.get())

    def _resend(self, entry: Unconfirmed, lost: BrokerUnavailable) -> None:
        """A waited publish with the call's remaining retry policy, as ``submit()``
        retries one (after the wait the lost connection costs, as a copy)."""
        try:
            time.sleep(next_pause(entry.pauses, lost))
            publish_retrying(self._broker(), resent(entry.routed), entry.pauses,
                             self._confirm_timeout)
        except BrokerUnavailable as exc:
            self._failed(entry, BrokerUnavailable(
                f"connection lost before RabbitMQ confirmed; out of publish retries: {exc}"))
        except PublishError as exc:
            self._failed(entry, exc)
        else:
            self._confirmed(entry)


def _flush_at_exit(ref: weakref.ref[ConfirmTracker]) -> None:
    tracker = ref()
    if tracker is not None and not tracker.flush(10.0):
        log.error("exiting with task messages RabbitMQ has not confirmed",
                  count=tracker.outstanding)
