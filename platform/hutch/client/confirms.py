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
from typing import Any, ClassVar, Generic, TypeVar

from ..brokers.base import Broker
from ..errors import BrokerUnavailable, PublishError
from ..logs import get_logger
from ..messages import TaskMessage, Wire, resent
from .base import next_pause, publish_retrying

log = get_logger("hutch.client")

WINDOW = 10_000
"""Submits whose confirm may be outstanding at once (a few MB of messages at most)."""

Routed = list[tuple[str, Wire]]


class Handed:
    """One submit's messages until RabbitMQ confirmed them, or they failed for good: what
    the synchronous and the asyncio trackers (hutch.client.aio_confirms) both keep. A
    subclass names the flag its waiters wait on (a thread's or an event loop's)."""

    __slots__ = ("_settled", "error", "messages", "pauses", "routed")
    _flag: ClassVar[type[Any]]
    """threading.Event or asyncio.Event."""

    def __init__(self, routed: Routed, messages: Sequence[TaskMessage],
                 pauses: Iterator[float]) -> None:
        self.routed = routed
        self.messages = messages
        self.pauses = pauses
        """The call's remaining waits between publish attempts (its retry_policy)."""
        self.error: BaseException | None = None
        self._settled = self._flag()

    @property
    def task_ids(self) -> list[str]:
        return [m.id for m in self.messages]

    def finish(self, error: BaseException | None) -> None:
        self.error = error
        self._settled.set()

    def outcome(self) -> bool:
        """True for a confirmed submit; raises the error of a failed one (once settled)."""
        if self.error is not None:
            raise self.error
        return True


class Unconfirmed(Handed):
    """A submit of the synchronous client, waited for by threads."""

    __slots__ = ()
    _flag = threading.Event

    def confirmed(self, timeout: float | None = None) -> bool:
        """True once confirmed, False if ``timeout`` ran out first; raises the error
        that made the publish fail for good."""
        return self._settled.wait(timeout) and self.outcome()


H = TypeVar("H", bound=Handed)


def window_full(timeout: float) -> PublishError:
    """The caller waited ``timeout`` seconds for room among the outstanding confirms."""
    return PublishError(f"{WINDOW} submits have waited {timeout:g}s for RabbitMQ's "
                        "confirms; is the broker blocking publishers?")


class Bookkeeping(Generic[H]):
    """How both trackers settle a submit (the module docstring): confirmed, published
    again after a lost connection, or failed for good and logged. Each side keeps its
    submits and publishes again in its own way (a thread, or an asyncio task)."""

    def __init__(self, on_confirmed: Callable[[H], None]) -> None:
        self._on_confirmed = on_confirmed
        self._open: set[H] = set()
        self.republished = 0
        """Submits whose connection dropped before their confirm, published again."""

    @property
    def outstanding(self) -> int:
        return len(self._open)

    def _answered(self, entry: H, error: BaseException | None) -> None:
        """The broker answered, or the connection dropped (``error`` BrokerUnavailable)."""
        if error is None:
            self._confirmed(entry)
        elif isinstance(error, BrokerUnavailable):
            self.republished += 1
            self._publish_again(entry, error)
        else:
            self._failed(entry, error)

    def _republished(self, entry: H, error: BaseException | None) -> None:
        """The outcome of publishing ``entry`` again with its retry policy."""
        if error is None:
            self._confirmed(entry)
            return
        if isinstance(error, BrokerUnavailable):
            error = BrokerUnavailable("connection lost before RabbitMQ confirmed; out of "
                                      f"publish retries: {error}")
        self._failed(entry, error)

    def _confirmed(self, entry: H) -> None:
        try:
            self._on_confirmed(entry)
        finally:
            self._close(entry, None)

    def _failed(self, entry: H, error: BaseException) -> None:
        log.error("task message not accepted by the broker: not queued",
                  task_ids=entry.task_ids, error=str(error))
        self._close(entry, error)

    def _close(self, entry: H, error: BaseException | None) -> None:
        raise NotImplementedError

    def _publish_again(self, entry: H, lost: BrokerUnavailable) -> None:
        raise NotImplementedError


class ConfirmTracker(Bookkeeping[Unconfirmed]):
    """Keeps one client's handed-over submits until each is confirmed or failed."""

    def __init__(self, broker: Callable[[], Broker], on_confirmed: Callable[[Unconfirmed], None],
                 confirm_timeout: float) -> None:
        """``broker``: the client's broker (a republish uses it, lazily); ``on_confirmed``
        runs in the publisher's I/O thread for each confirmed submit, so it must be
        quick (the PENDING writer's queue)."""
        super().__init__(on_confirmed)
        self._broker = broker
        self._confirm_timeout = confirm_timeout
        self._room = threading.BoundedSemaphore(WINDOW)
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._again: queue.SimpleQueue[tuple[Unconfirmed, BrokerUnavailable]] = \
            queue.SimpleQueue()
        self._resender: threading.Thread | None = None
        atexit.register(_flush_at_exit, weakref.ref(self))

    def hand_over(self, routed: Routed, messages: Sequence[TaskMessage],
                  pauses: Iterator[float]) -> Unconfirmed:
        """Publish without waiting; raises PublishError when the window stays full for
        ``broker_confirm_timeout`` and BrokerUnavailable when the publisher is closed."""
        if not self._room.acquire(timeout=self._confirm_timeout):
            raise window_full(self._confirm_timeout)
        entry = Unconfirmed(routed, messages, pauses)
        with self._lock:
            self._open.add(entry)
        try:
            confirmation = self._broker().publish_later(routed)
        except BaseException as exc:
            self._close(entry, exc)
            raise
        confirmation.add_done_callback(lambda c: self._answered(entry, c.error))
        return entry

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every submit handed over so far is confirmed or failed for good."""
        with self._drained:
            return self._drained.wait_for(lambda: not self._open, timeout)

    def _close(self, entry: Unconfirmed, error: BaseException | None) -> None:
        entry.finish(error)
        with self._drained:
            self._open.discard(entry)
            if not self._open:
                self._drained.notify_all()
        self._room.release()

    # -- publishing again after a lost connection (in a thread of its own) -------------
    def _publish_again(self, entry: Unconfirmed, lost: BrokerUnavailable) -> None:
        with self._lock:
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
        except (BrokerUnavailable, PublishError) as exc:
            self._republished(entry, exc)
        else:
            self._republished(entry, None)


def _flush_at_exit(ref: weakref.ref[ConfirmTracker]) -> None:
    tracker = ref()
    if tracker is not None and not tracker.flush(10.0):
        log.error("exiting with task messages RabbitMQ has not confirmed",
                  count=tracker.outstanding)
