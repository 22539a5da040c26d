"""Wake ``AsyncResult.get()`` the moment a worker commits a result.

Workers publish a small notice (the ids they just committed) on the broker's
notices exchange after every result transaction, under the key of the client that
sent those tasks (TaskMessage.notify: each client's own, :func:`new_notice_key`). A
waiter subscribes once per client to its own key (and to ``all``, for revocations),
and ``get()`` re-reads the row only when its id is announced, so waiting costs no
database polling, and a client is not sent the notices of every other client's
tasks (workers carry the key on to every task of a workflow the client sent:
hutch.workflows.apply.handle). A wait on a task this client did not send itself (a
handle made from a bare id, a ResultSet of another client's handles) also subscribes
to every notice, until WIDE_LINGER seconds after the last such wait ends. A slow fallback re-read (once a second)
covers a notice lost to a broker restart.

The waiter also remembers the last ANNOUNCED_MAX ids announced since it
subscribed, so ``get()`` on a task this client sent while subscribed can skip
its first read: an id not announced since then cannot be finished yet, and
waiting for its notice goes first (docs/performance.md, the round trip).

A notice may carry a task's SUCCESS outcome as stored (hutch.messages.Carried):
the waiter keeps it for an id being waited on, and ``get()`` returns it with no
read at all.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Callable

from ..brokers.base import EVERY_KEY, NOTICE_EVERYONE, FanOut, SubscriptionHandle
from ..logs import get_logger
from ..messages import Carried, read_notice

log = get_logger("hutch.results")

FALLBACK_RECHECK = 1.0
ANNOUNCED_MAX = 10_000
"""Ids remembered as announced (each about 100 bytes): a task sent more than this
many announcements before its ``get()`` is read first, as any other."""
WIDE_LINGER = 5.0
"""Seconds the subscription to every notice outlives the last wait that needed it, so
a loop of such waits does not subscribe once per call."""
Mark = tuple[object, int]
"""(subscription, ids announced on it so far): see :meth:`CompletionWaiter.mark`."""


def new_notice_key() -> str:
    """A client's own key for its tasks' completion notices (TaskMessage.notify)."""
    return f"client.{uuid.uuid4().hex}"


class CompletionWaiter:
    """Per-client subscription that turns notices into per-task wake-ups."""

    def __init__(self, broker: FanOut, key: str) -> None:
        """``key``: the client's notice key (its messages' ``notify``)."""
        self._broker = broker
        self._keys = (key, NOTICE_EVERYONE)
        self._lock = threading.Lock()
        self._wide = _Wide(lambda: broker.subscribe_notices(self._on_notice, (EVERY_KEY,)))
        self._watching: dict[str, list[threading.Event]] = defaultdict(list)
        self._handle: SubscriptionHandle | None = None
        self._announced: dict[str, None] = {}  # insertion-ordered: the oldest go first
        self._count = 0  # ids announced since subscribing, repeats included
        self._session: object | None = None  # one per subscription
        self._carried: dict[str, Carried] = {}  # outcomes of ids being waited on

    def mark(self) -> Mark | None:
        """Where the announcements stand, taken just before publishing a task: None
        unless subscribed (a notice sent before subscribing is never seen)."""
        with self._lock:
            return None if self._session is None else (self._session, self._count)

    def announced_since(self, task_id: str, mark: Mark) -> bool:
        """Whether ``task_id`` may have been announced since ``mark``: True when it was,
        when too many ids came since for the memory to tell, or when the mark is from
        another subscription (or another waiter) than the live one."""
        session, count = mark
        with self._lock:
            return session is not self._session or task_id in self._announced \
                or self._count - count > ANNOUNCED_MAX

    def watch_many(self, task_ids: list[str], own: bool = False) -> threading.Event:
        """One event set when any of ``task_ids`` is announced (GroupResult.get);
        ``own``: every one was sent by this client (its notices come under its key),
        else every notice is listened to until :meth:`unwatch_many`."""
        self._ensure_subscribed()
        if not own:
            self._wide.begin()
        event = threading.Event()
        with self._lock:
            for task_id in task_ids:
                self._watching[task_id].append(event)
        return event

    def unwatch_many(self, task_ids: list[str], event: threading.Event,
                     own: bool = False) -> None:
        """Stop watching; ``own`` as given to :meth:`watch_many`."""
        for task_id in task_ids:
            self.unwatch(task_id, event)
        if not own:
            self._wide.end()

    def carried(self, task_id: str) -> Carried | None:
        """The outcome a notice carried for ``task_id`` while it was watched, if any."""
        with self._lock:
            return self._carried.get(task_id)

    def unwatch(self, task_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._watching.get(task_id)
            if events and event in events:
                events.remove(event)
                if not events:
                    del self._watching[task_id]
                    self._carried.pop(task_id, None)

    def close(self) -> None:
        with self._lock:
            self._session = None  # notices from now on are not seen
        self._wide.close()
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _ensure_subscribed(self) -> None:
        if self._handle is None:
            with self._lock:
                if self._handle is None:
                    self._handle = self._broker.subscribe_notices(self._on_notice,
                                                                 self._keys)
                    self._session = object()

    def _on_notice(self, body: bytes) -> None:
        notice = read_notice(body)
        ids = notice.ids
        with self._lock:
            for task_id in ids:
                if task_id in self._watching and (outcome := notice.carried(task_id)):
                    self._carried[task_id] = outcome
            for task_id in ids:
                self._announced.pop(task_id, None)
                self._announced[task_id] = None
            self._count += len(ids)
            while len(self._announced) > ANNOUNCED_MAX:
                del self._announced[next(iter(self._announced))]
            woken = [e for i in ids for e in self._watching.get(i, ())]
        for event in woken:
            event.set()


class _Wide:
    """The subscription to every notice, open while a wait needs it and WIDE_LINGER
    seconds after (a timer thread closes it then)."""

    def __init__(self, subscribe: Callable[[], SubscriptionHandle]) -> None:
        self._subscribe = subscribe
        self._lock = threading.Lock()  # apart from the waiter's: subscribing is I/O
        self._waits = 0
        self._handle: SubscriptionHandle | None = None
        self._closer: threading.Timer | None = None

    def begin(self) -> None:
        """Subscribed (BrokerUnavailable if it cannot be) before this returns, so a read
        after it misses no notice."""
        with self._lock:
            if self._closer is not None:
                self._closer.cancel()
                self._closer = None
            if self._handle is None:
                self._handle = self._subscribe()
            self._waits += 1

    def end(self) -> None:
        with self._lock:
            self._waits -= 1
            if self._waits == 0 and self._handle is not None:
                self._closer = threading.Timer(WIDE_LINGER, self._linger_over)
                self._closer.daemon = True
                self._closer.start()

    def _linger_over(self) -> None:
        with self._lock:  # a wait that began since cancelled this timer or reset it
            if self._closer is not threading.current_thread() or self._waits:
                return
            handle, self._handle, self._closer = self._handle, None, None
        if handle is not None:
            handle.close()

    def close(self) -> None:
        with self._lock:
            if self._closer is not None:
                self._closer.cancel()
            handle, self._handle, self._closer = self._handle, None, None
        if handle is not None:
            handle.close()
